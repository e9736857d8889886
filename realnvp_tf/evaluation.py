"""Evaluation: test negative log-likelihood in bits/dim, and sample grids."""

import math

import numpy as np
import tensorflow as tf

from realnvp_tf import data


def evaluate_bits_per_dim(log_prob_fn, dataset, image_shape, num_dequant_samples=1,
                          seed=0):
  """Bits/dim of every image of `dataset`: mean, standard error and count.

  Args:
    log_prob_fn: maps float32 [B, H, W, C] pixels in [0, K) to [B] log-densities
      (a flow's `log_prob`, or a SavedModel's `log_prob` signature).
    dataset: batches of dequantized images x + u (`data.make_dataset(training=False)`).
    image_shape: (H, W, C).
    num_dequant_samples: S. With S > 1 the figure is the importance-weighted bound
      -log mean_s p(x + u_s) of the discrete image x (Theis et al.), tighter as S
      grows; the first u_s is the dataset's own noise, so S = 1 is the usual figure.
    seed: seed of the extra noise draws u_2..u_S.

  Returns:
    dict(bits_per_dim, bits_per_dim_stderr, num_images, per_image) with per_image a
    float64 numpy array.
  """
  if num_dequant_samples < 1:
    raise ValueError(f"num_dequant_samples must be >= 1; got {num_dequant_samples}.")
  num_dims = math.prod(image_shape)
  log_prob_fn = tf.function(log_prob_fn, reduce_retracing=True)
  per_image = []
  for batch_index, batch in enumerate(dataset):
    log_probs = [log_prob_fn(batch)]
    pixels = tf.floor(batch)
    for s in range(1, num_dequant_samples):
      noise = tf.random.stateless_uniform(tf.shape(batch), [seed * 1_000_003 + s, batch_index])
      log_probs.append(log_prob_fn(data.add_noise(pixels, noise)))
    log_probs = tf.stack(log_probs).numpy().astype(np.float64)
    bound = _log_mean_exp(log_probs) if num_dequant_samples > 1 else log_probs[0]
    per_image.append(-bound / (num_dims * math.log(2.0)))
  per_image = np.concatenate(per_image) if per_image else np.zeros([0])
  if per_image.size == 0:
    raise ValueError("The evaluation dataset is empty.")
  stderr = per_image.std(ddof=1) / math.sqrt(per_image.size) if per_image.size > 1 else 0.0
  return dict(bits_per_dim=float(per_image.mean()), bits_per_dim_stderr=float(stderr),
              num_images=int(per_image.size), per_image=per_image)


def _log_mean_exp(values):
  top = values.max(axis=0)
  return top + np.log(np.mean(np.exp(values - top), axis=0))


def image_grid(images, num_levels, columns=None):
  """uint8 images [N, H, W, C] with pixels 0..K-1 -> one uint8 grid image, 0..255."""
  images = np.asarray(images)
  count, height, width, channels = images.shape
  columns = columns or int(math.ceil(math.sqrt(count)))
  rows = int(math.ceil(count / columns))
  scaled = (images.astype(np.int32) * 255 // (num_levels - 1)).astype(np.uint8)
  grid = np.zeros([rows * (height + 1) + 1, columns * (width + 1) + 1, channels],
                  np.uint8)
  for i, image in enumerate(scaled):
    row, col = divmod(i, columns)
    grid[1 + row * (height + 1):1 + row * (height + 1) + height,
         1 + col * (width + 1):1 + col * (width + 1) + width] = image
  return grid
