"""Out-of-distribution evaluation: how well each score (`scores`) tells a set of
images from the model's own test images (AUROC, AUPR, FPR95; see `metrics`).

The out-of-distribution set is a dataset split (`--ood_dataset=NAME`), images of a
folder, glob or array (`--ood_images`), or a synthetic set (`uniform_noise`: every
pixel uniform in 0..K-1; `constant`: one uniform level for all pixels of an image)
with as many images as the in-distribution set, drawn with the seed.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from realnvp_tf.data import image_inputs
from realnvp_tf.evaluation import model_images
from realnvp_tf.ood import metrics
from realnvp_tf.ood import scores as scores_lib
from realnvp_tf.ood import scoring

SYNTHETIC = ("uniform_noise", "constant")


def synthetic_inputs(kind, count, image_shape, num_levels, seed=0):
  """`ImageInputs` of `count` synthetic images (see the module docstring)."""
  rng = np.random.default_rng([seed, SYNTHETIC.index(kind)])
  if kind == "uniform_noise":
    array = rng.integers(0, num_levels, size=(count,) + tuple(image_shape))
  else:
    array = np.broadcast_to(rng.integers(0, num_levels, size=(count, 1, 1, 1)),
                            (count,) + tuple(image_shape))
  array = np.ascontiguousarray(array, np.uint8)
  images = tf.data.Dataset.from_tensor_slices(
      (tf.range(count, dtype=tf.int64), array))
  return image_inputs.ImageInputs(kind, images, count,
                                  lambda i: f"{kind}[{i}]")


def ood_inputs(model, ood_dataset=None, ood_images=None, split="test", count=10_000,
               data_dir=None, manual_dir=None, seed=0):
  """The out-of-distribution set: a synthetic set (`SYNTHETIC`) of `count` images, a
  dataset's `split`, or a folder/glob/array (`ood_images`), brought to the model's
  images."""
  if ood_images:
    return image_inputs.open_inputs(ood_images, model.image_shape, model.num_levels,
                                    argument="ood_images")
  if ood_dataset in SYNTHETIC:
    return synthetic_inputs(ood_dataset, count, model.image_shape, model.num_levels,
                            seed)
  return model_images.split_inputs(model, ood_dataset, None, split, data_dir,
                                   manual_dir)


def collect_scores(model, inputs, batch_size=256, seed=0, max_images=None):
  """{score name: float64 array} of (the first `max_images` of) `inputs`."""
  if max_images:
    inputs = dataclasses.replace(inputs, images=inputs.images.take(max_images),
                                 count=min(inputs.count or max_images, max_images))
  collected = {}
  for _, scores in scoring.score_batches(model, inputs, batch_size, seed):
    for name, values in scores.items():
      collected.setdefault(name, []).append(np.asarray(values, np.float64))
  if not collected:
    raise ValueError(f"{inputs.description}: no image could be read.")
  return {name: np.concatenate(values) for name, values in collected.items()}


def compare(in_scores, out_scores):
  """{score name: dict(auroc, aupr, fpr95, in_mean, ood_mean)} in table order."""
  return {name: dict(metrics.detection_metrics(in_scores[name], out_scores[name]),
                     in_mean=float(in_scores[name].mean()),
                     ood_mean=float(out_scores[name].mean()))
          for name in scores_lib.SCORE_NAMES if name in in_scores}


def table(result):
  """The stdout table of an OOD evaluation's result (`evaluate`)."""
  lines = [f"OOD set {result['ood']} ({result['num_ood']} images) against "
           f"{result['in']} ({result['num_in']} images); OOD is the positive class",
           f"{'score':<22}{'AUROC':>8}{'AUPR':>8}{'FPR95':>8}{'in mean':>10}"
           f"{'OOD mean':>10}  what it is"]
  for name, row in result["scores"].items():
    lines.append(f"{name:<22}{row['auroc']:>8.4f}{row['aupr']:>8.4f}{row['fpr95']:>8.4f}"
                 f"{row['in_mean']:>10.4f}{row['ood_mean']:>10.4f}  "
                 f"{scores_lib.DESCRIPTIONS[name]}")
  return "\n".join(lines)


def evaluate(model, in_inputs, out_inputs, batch_size=256, seed=0, max_images=None):
  """Scores both sets and compares them. Returns (result dict for the metrics JSON,
  in-distribution scores, OOD scores)."""
  inside = collect_scores(model, in_inputs, batch_size, seed, max_images)
  outside = collect_scores(model, out_inputs, batch_size, seed + 1, max_images)
  result = dict(
      **{"in": in_inputs.description, "ood": out_inputs.description},
      num_in=int(inside["bits_per_dim"].size),
      num_ood=int(outside["bits_per_dim"].size),
      scores=compare(inside, outside))
  return result, inside, outside


def histogram(in_scores, out_scores, bins=48, height=120):
  """A uint8 RGB image: one panel per score (top to bottom in `scores_lib.SCORE_NAMES`
  order), the in-distribution histogram in blue, the OOD one in orange (overlap
  darker), over the range of both sets' 1st-99th percentiles."""
  panels = []
  for name in scores_lib.SCORE_NAMES:
    if name not in in_scores:
      continue
    both = np.concatenate([in_scores[name], out_scores[name]])
    low, high = np.percentile(both, [1, 99])
    high = high if high > low else low + 1.0
    panel = np.full((height, bins * 4, 3), 255, np.uint8)
    for values, colour in ((in_scores[name], (31, 119, 180)),
                           (out_scores[name], (255, 127, 14))):
      counts, _ = np.histogram(np.clip(values, low, high), bins=bins, range=(low, high))
      bars = np.round(counts / max(counts.max(), 1) * (height - 4)).astype(int)
      for b, bar in enumerate(bars):
        if bar:
          region = panel[height - bar:, b * 4:b * 4 + 3]
          region[:] = np.minimum(region, np.array(colour, np.uint8))
    panels.append(panel)
    panels.append(np.zeros((2, bins * 4, 3), np.uint8))
  return np.concatenate(panels[:-1])
