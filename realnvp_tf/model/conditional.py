"""Class-conditional flows: p(x | y) for every class, the label prior p(y), and the
generative classifier p(y | x) = p(x | y) p(y) / sum_y' p(x | y') p(y')."""

import numpy as np
import tensorflow as tf

from realnvp_tf.model import flow as flow_lib


def class_log_likelihoods(log_prob_fn, images, num_classes):
  """log p(x | y) of float32 images [B, H, W, C] for every class: [B, num_classes].

  `log_prob_fn(images, labels)` is log p(x | y): `flow_lib.log_prob` bound to a
  flow, or a loaded model's `log_prob` signature. It runs once per class, each time
  on the whole batch, in a loop, so that a graph holds the flow once whatever the
  number of classes (eagerly, the loop is a Python loop).
  """
  count = tf.shape(images)[0]
  per_class = tf.map_fn(
      lambda y: log_prob_fn(images, tf.fill([count], y)),
      tf.range(num_classes), fn_output_signature=tf.float32)
  return tf.transpose(per_class)


def marginal_log_prob(log_prob_fn, images, num_classes, log_prior):
  """log p(x) = logsumexp_y log p(x | y) + log p(y) of float32 images: [B]."""
  return posterior(class_log_likelihoods(log_prob_fn, images, num_classes),
                   log_prior)["log_prob"]


def log_prob(flow, images, labels=None, log_prior=None):
  """The density of any flow with labels optional: log p(x | y) with `labels`;
  without them log p(x), the flow's own for an unconditional flow and the marginal
  sum_y p(x | y) p(y) for a class-conditional one (`log_prior` log p(y), uniform
  when None)."""
  num_classes = flow.bijector.config.num_classes
  if labels is not None or not num_classes:
    return flow_lib.log_prob(flow, images, labels)
  return marginal_log_prob(
      lambda x, y: flow_lib.log_prob(flow, x, y), images, num_classes,
      uniform_log_prior(num_classes) if log_prior is None else log_prior)


def log_prior_from_counts(counts):
  """log p(y) from the training split's label counts, add-one smoothed (a class
  without training images keeps a finite prior): float32 [num_classes]."""
  counts = np.asarray(counts, np.float64)
  if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
    raise ValueError(f"counts must be a non-empty vector of counts >= 0; got {counts}.")
  return np.log((counts + 1.0) / (counts.sum() + counts.size)).astype(np.float32)


def uniform_log_prior(num_classes):
  return np.full([num_classes], -np.log(num_classes), np.float32)


def log_prior(counts, num_classes):
  """log p(y): from the training label counts (`log_prior_from_counts`), uniform
  when there are none (e.g. a run that has not finished)."""
  return (log_prior_from_counts(counts) if counts is not None and len(counts) else
          uniform_log_prior(num_classes))


def posterior(log_likelihoods, log_prior):
  """The generative classifier of log p(x | y) [B, n] and log p(y) [n]: the one place
  that computes the marginal p(x) = sum_y p(x | y) p(y).

  Returns dict(probabilities=p(y | x) [B, n], labels=argmax_y [B] int32,
  log_prob=log p(x) = logsumexp_y log p(x | y) p(y) [B]).
  """
  # float32 tensors (the flow's) stay float32; float64 arrays (an evaluation's
  # numpy figures) stay float64.
  joint = tf.convert_to_tensor(log_likelihoods)
  joint = joint + tf.cast(log_prior, joint.dtype)
  marginal = tf.reduce_logsumexp(joint, axis=-1)
  return {"probabilities": tf.exp(joint - marginal[..., None]),
          "labels": tf.argmax(joint, axis=-1, output_type=tf.int32),
          "log_prob": marginal}


def grid_labels(num_classes, per_class):
  """Labels of a sample grid with a row per class: [0]*per_class + [1]*per_class +
  ... (int32), for `evaluation.image_grid(..., columns=per_class)`."""
  return np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
