"""Test negative log-likelihood in bits/dim, and its importance-weighted bound."""

import math

import numpy as np
import tensorflow as tf

from realnvp_tf.data import dequantization
from realnvp_tf.model import flow


def evaluate_bits_per_dim(log_prob_fn, dataset, image_shape, num_dequant_samples=1,
                          seed=0):
  """Bits/dim of every image of `dataset`: mean, standard error and count.

  Args:
    log_prob_fn: maps float32 [B, H, W, C] pixels in [0, K) to [B] log-densities
      (a flow's `log_prob`, or a SavedModel's `log_prob` signature); for batches
      with labels, `log_prob_fn(images, labels)` gives log p(x | y). Called through
      a `tf.function` made here, unless it is one already (pass one to evaluate
      again without tracing again).
    dataset: batches of dequantized images x + u (`data.make_dataset(training=False)`),
      or (images, labels) batches (`labels=True`).
    image_shape: (H, W, C).
    num_dequant_samples: S. With S > 1 the figure is the importance-weighted bound
      -log mean_s p(x + u_s) of the discrete image x (Theis et al.), tighter as S
      grows; the first u_s is the dataset's own noise, so S = 1 is the usual figure.
    seed: the seed the dataset's noise was drawn with (`make_dataset`'s), which
      the extra draws u_2..u_S of image i also come from
      (`dequantization.image_noise(..., seed, i, draw=s)`).

  Returns:
    dict(bits_per_dim, bits_per_dim_stderr, num_images, per_image) with per_image a
    float64 numpy array.
  """
  if num_dequant_samples < 1:
    raise ValueError(f"num_dequant_samples must be >= 1; got {num_dequant_samples}.")
  if not isinstance(log_prob_fn, tf.types.experimental.PolymorphicFunction):
    log_prob_fn = tf.function(log_prob_fn, reduce_retracing=True)
  per_image, first = [], 0
  for batch in dataset:
    batch, *labels = batch if isinstance(batch, tuple) else (batch,)
    log_probs = [log_prob_fn(batch, *labels)]
    pixels, count = tf.floor(batch), int(batch.shape[0])
    for s in range(1, num_dequant_samples):
      noise = dequantization.batch_noise(batch.shape[1:], seed, first, count, draw=s)
      log_probs.append(log_prob_fn(dequantization.add_noise(pixels, noise), *labels))
    first += count
    log_probs = tf.cast(tf.stack(log_probs), tf.float64)
    # log mean_s p(x + u_s); for S = 1 exactly log p(x + u_1).
    bound = (tf.reduce_logsumexp(log_probs, axis=0) - math.log(num_dequant_samples)
             if num_dequant_samples > 1 else log_probs[0])
    per_image.append(flow.bits_per_dim(bound.numpy(), image_shape))
  per_image = np.concatenate(per_image) if per_image else np.zeros([0])
  if per_image.size == 0:
    raise ValueError("The evaluation dataset is empty.")
  stderr = (per_image.std(ddof=1) / math.sqrt(per_image.size) if per_image.size > 1
            else 0.0)
  return dict(bits_per_dim=float(per_image.mean()), bits_per_dim_stderr=float(stderr),
              num_images=int(per_image.size), per_image=per_image)
