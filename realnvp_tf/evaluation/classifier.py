"""Evaluation of a class-conditional model: the generative classifier's accuracy,
the marginal bits/dim, and samples for grids with a row per class."""

import math

import numpy as np

from realnvp_tf.model import conditional
from realnvp_tf.model import flow


def model_log_prior(model):
  """log p(y) of a loaded class-conditional model: from the training split's label
  counts it records, uniform when it has none."""
  return conditional.log_prior(model.metadata.get("class_counts"), model.num_classes)


def class_log_likelihoods(model, images):
  """log p(x | y) [B, n] of dequantized float32 images: the model's `log_prob`
  signature once per class, on the whole batch."""
  count = int(images.shape[0])
  return np.stack([model.log_prob(images, np.full([count], y, np.int32)).numpy()
                   for y in range(model.num_classes)], axis=1).astype(np.float64)


def classifier_metrics(model, dataset):
  """The generative classifier argmax_y log p(x | y) + log p(y) on a labelled
  evaluation dataset ((images, labels) batches of dequantized images).

  Returns dict(accuracy (prior from the training label counts),
  accuracy_uniform_prior (argmax of p(x | y) alone), marginal_bits_per_dim and its
  stderr (-log p(x), p(x) = sum_y p(x | y) p(y): comparable with an unconditional
  model's figure), conditional_bits_per_dim (-log p(x | y) at the true labels),
  num_images, per_class_accuracy).
  """
  log_prior = model_log_prior(model).astype(np.float64)
  likelihoods, labels = [], []
  for images, batch_labels in dataset:
    likelihoods.append(class_log_likelihoods(model, images))
    labels.append(batch_labels.numpy())
  if not labels:
    raise ValueError("The evaluation dataset is empty.")
  likelihoods, labels = np.concatenate(likelihoods), np.concatenate(labels)
  classified = conditional.posterior(likelihoods, log_prior)
  marginal_bits = flow.bits_per_dim(classified["log_prob"].numpy(), model.image_shape)
  true_bits = flow.bits_per_dim(likelihoods[np.arange(len(labels)), labels],
                                model.image_shape)
  correct = classified["labels"].numpy() == labels
  per_class = [float(correct[labels == y].mean()) if np.any(labels == y) else None
               for y in range(model.num_classes)]
  return dict(
      accuracy=float(correct.mean()),
      accuracy_uniform_prior=float((likelihoods.argmax(axis=1) == labels).mean()),
      marginal_bits_per_dim=float(marginal_bits.mean()),
      marginal_bits_per_dim_stderr=float(marginal_bits.std(ddof=1) /
                                         math.sqrt(len(labels)))
      if len(labels) > 1 else 0.0,
      conditional_bits_per_dim=float(true_bits.mean()),
      num_images=int(len(labels)), per_class_accuracy=per_class,
      prior="training label counts" if model.metadata.get("class_counts") else
      "uniform")
