"""Classification and detection metrics computed by brute force from their definitions,
the tests' independent reference for `realnvp_tf.ood.metrics` and the classifier's
figures (the package computes them from ranks and sorted thresholds; nothing here is
shared with it). Scores: higher means "more likely positive"; labels 1 are positive.
"""

import numpy as np


def auroc(labels, scores):
  """The share of (positive, negative) pairs the positive scores higher, ties one half
  (every pair compared)."""
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  positive, negative = scores[labels == 1], scores[labels == 0]
  pairs = positive[:, None] - negative[None, :]
  return float(np.mean((pairs > 0) + 0.5 * (pairs == 0)))


def _flagged(labels, scores, threshold):
  """(true positives, false positives) of flagging every score >= threshold."""
  flagged = scores >= threshold
  return np.sum(flagged & (labels == 1)), np.sum(flagged & (labels == 0))


def average_precision(labels, scores):
  """Sum over the distinct scores t, highest first, of (recall(t) - recall of the
  threshold before) * precision(t), flagging every score >= t."""
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  total, previous_recall, area = np.sum(labels == 1), 0.0, 0.0
  for threshold in sorted(set(scores.tolist()), reverse=True):
    true, false = _flagged(labels, scores, threshold)
    recall = true / total
    area += (recall - previous_recall) * true / (true + false)
    previous_recall = recall
  return float(area)


def fpr_at_tpr(labels, scores, level=0.95):
  """The false-positive rate at the highest distinct score t that flags (score >= t) at
  least `level` of the positives."""
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  for threshold in sorted(set(scores.tolist()), reverse=True):
    true, false = _flagged(labels, scores, threshold)
    if true / np.sum(labels == 1) >= level:
      return float(false / np.sum(labels == 0))
  raise AssertionError("unreachable: the lowest score flags every positive")


def accuracy(labels, predicted):
  return float(np.mean(np.asarray(labels) == np.asarray(predicted)))


def per_class_recall(labels, predicted, num_classes):
  """[recall of class c for c in 0..num_classes-1]: the share of class c's images
  predicted as c."""
  labels, predicted = np.asarray(labels), np.asarray(predicted)
  return np.array([np.mean(predicted[labels == c] == c) for c in range(num_classes)])
