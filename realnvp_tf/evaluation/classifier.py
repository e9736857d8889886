"""Evaluation of a class-conditional model: the generative classifier's accuracy and
the marginal bits/dim (a loaded model's, or any log p(x | y) function's)."""

import math

import numpy as np

from realnvp_tf.model import conditional
from realnvp_tf.model import flow as flow_lib


def classifier_metrics(model, dataset):
  """The generative classifier of a loaded class-conditional model (its
  `class_log_likelihoods`, its recorded prior) on a labelled evaluation dataset
  ((images, labels) batches of dequantized images): see `evaluate_classifier`."""
  return evaluate_classifier(model.class_log_likelihoods, dataset, model.log_prior,
                             model.image_shape, model.prior)


def evaluate_classifier(log_likelihoods_fn, dataset, log_prior, image_shape, prior):
  """The generative classifier argmax_y log p(x | y) + log p(y) on a labelled
  evaluation dataset ((images, labels) batches of dequantized images).

  Args:
    log_likelihoods_fn: images [B, H, W, C] -> log p(x | y) [B, n] for every class.
    dataset: (images, labels) batches.
    log_prior: log p(y) [n].
    image_shape: (H, W, C).
    prior: what the prior is, for the report ("training label counts", "uniform").

  Returns dict(accuracy (with `log_prior`), accuracy_uniform_prior (argmax of
  p(x | y) alone), marginal_bits_per_dim and its stderr (-log p(x), p(x) =
  sum_y p(x | y) p(y): comparable with an unconditional model's figure),
  conditional_bits_per_dim (-log p(x | y) at the true labels), num_images,
  per_class_accuracy, prior).
  """
  log_prior = np.asarray(log_prior, np.float64)
  likelihoods, labels = [], []
  for images, batch_labels in dataset:
    likelihoods.append(np.asarray(log_likelihoods_fn(images), np.float64))
    labels.append(batch_labels.numpy())
  if not labels:
    raise ValueError("The evaluation dataset is empty.")
  likelihoods, labels = np.concatenate(likelihoods), np.concatenate(labels)
  classified = conditional.posterior(likelihoods, log_prior)
  marginal_bits = flow_lib.bits_per_dim(classified["log_prob"].numpy(), image_shape)
  true_bits = flow_lib.bits_per_dim(likelihoods[np.arange(len(labels)), labels],
                                image_shape)
  correct = classified["labels"].numpy() == labels
  per_class = [float(correct[labels == y].mean()) if np.any(labels == y) else None
               for y in range(len(log_prior))]
  return dict(
      accuracy=float(correct.mean()),
      accuracy_uniform_prior=float((likelihoods.argmax(axis=1) == labels).mean()),
      marginal_bits_per_dim=float(marginal_bits.mean()),
      marginal_bits_per_dim_stderr=float(marginal_bits.std(ddof=1) /
                                         math.sqrt(len(labels)))
      if len(labels) > 1 else 0.0,
      conditional_bits_per_dim=float(true_bits.mean()),
      num_images=int(len(labels)), per_class_accuracy=per_class, prior=prior)
