"""How well a score tells out-of-distribution images from in-distribution ones.

The out-of-distribution (OOD) images are the positive class and a higher score means
"more likely OOD" (every score of `ood` is oriented so). For two samples of scores:

- AUROC: the probability that a random OOD image scores higher than a random
  in-distribution one, ties counting one half (the Mann-Whitney statistic). 0.5 is
  chance; a score below 0.5 ranks the sets the wrong way round.
- AUPR: the area under the precision-recall curve of the OOD class, as average
  precision: sum over thresholds of (recall_k - recall_(k-1)) * precision_k, one
  threshold per distinct score (scikit-learn's `average_precision_score`).
- FPR95: the share of in-distribution images flagged at the highest threshold that
  flags at least 95% of the OOD images (no interpolation).
"""

import numpy as np

TPR_LEVEL = 0.95


def _as_scores(values, name):
  values = np.asarray(values, np.float64).reshape(-1)
  if values.size == 0:
    raise ValueError(f"No {name} scores: both sets need at least one image.")
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{np.sum(~np.isfinite(values))} {name} scores are not finite.")
  return values


def auroc(in_scores, out_scores):
  """P(out > in) + P(out == in) / 2, from average ranks (ties shared)."""
  inside = _as_scores(in_scores, "in-distribution")
  outside = _as_scores(out_scores, "out-of-distribution")
  everything = np.concatenate([outside, inside])
  order = np.argsort(everything, kind="stable")
  ordered = everything[order]
  ranks = np.empty(everything.size)
  # Average rank (1-based) of each run of equal scores.
  starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
  ends = np.r_[starts[1:], ordered.size]
  run_ranks = (starts + ends + 1) / 2.0
  ranks[order] = np.repeat(run_ranks, ends - starts)
  n_out, n_in = outside.size, inside.size
  rank_sum = ranks[:n_out].sum()
  return float((rank_sum - n_out * (n_out + 1) / 2.0) / (n_out * n_in))


def _curve(in_scores, out_scores):
  """Counts of flagged OOD (true positives) and in-distribution (false positives)
  images at each distinct score taken as the threshold, highest first."""
  inside = _as_scores(in_scores, "in-distribution")
  outside = _as_scores(out_scores, "out-of-distribution")
  scores = np.concatenate([outside, inside])
  is_out = np.r_[np.ones(outside.size), np.zeros(inside.size)]
  order = np.argsort(-scores, kind="stable")
  scores, is_out = scores[order], is_out[order]
  last_of_run = np.r_[scores[1:] != scores[:-1], True]
  true_pos = np.cumsum(is_out)[last_of_run]
  false_pos = np.cumsum(1.0 - is_out)[last_of_run]
  return true_pos, false_pos, outside.size, inside.size


def aupr(in_scores, out_scores):
  """Average precision of the OOD class."""
  true_pos, false_pos, n_out, _ = _curve(in_scores, out_scores)
  precision = true_pos / (true_pos + false_pos)
  recall = true_pos / n_out
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(in_scores, out_scores, level=TPR_LEVEL):
  """The false-positive rate where the true-positive rate first reaches `level`."""
  true_pos, false_pos, n_out, n_in = _curve(in_scores, out_scores)
  reached = np.flatnonzero(true_pos / n_out >= level - 1e-12)
  return float(false_pos[reached[0]] / n_in)


def detection_metrics(in_scores, out_scores):
  """dict(auroc, aupr, fpr95) of telling `out_scores` apart from `in_scores`."""
  return dict(auroc=auroc(in_scores, out_scores), aupr=aupr(in_scores, out_scores),
              fpr95=fpr_at_tpr(in_scores, out_scores))
