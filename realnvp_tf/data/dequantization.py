"""Dequantization: the flow's event space is x + u, u ~ U[0, 1), for integer pixels x
in 0..K-1 (so that floor gives back the pixels)."""

import tensorflow as tf

from realnvp_tf.data import transforms

# Seeds derived as `seed * SEED_STRIDE + index` differ for every (seed, index) with
# index < SEED_STRIDE: a prime larger than any epoch count.
SEED_STRIDE = 1_000_003


def derived_seed(seed, index):
  """The seed of stream `index` (an epoch's data) of a run seeded `seed`."""
  return seed * SEED_STRIDE + index


def add_noise(pixels: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
  """`pixels + noise` for integer-valued float32 pixels and noise in [0, 1), kept
  below `pixels + 1` in float32, so that `floor` gives back the pixels.

  In float32, x + u rounds up to x + 1 when u is within half an ulp of x + 1 of 1 (for
  x = 255: u > 1 - 2**-17, a few times per MNIST epoch); such values are moved to the
  largest float32 below x + 1.
  """
  return tf.minimum(pixels + noise, tf.math.nextafter(pixels + 1.0, pixels))


def dequantize(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """x + u, u ~ U[0, 1) drawn with the stateless seed, with floor(x + u) == x."""
  x = tf.cast(image, tf.float32)
  return add_noise(x, tf.random.stateless_uniform(tf.shape(x), seed=seed,
                                                  dtype=tf.float32))


# The streams of a run's seed for evaluation noise (the pipeline's flips, crops and
# training noise have theirs in `pipeline`): the dequantization of image i, and the
# extra draws of the importance-weighted bound.
EVALUATION_NOISE, EXTRA_NOISE = 0, 4


def image_noise(image_shape, seed, index, draw=0):
  """U[0, 1) noise of image `index` of a split evaluated with `seed`: the one rule
  for evaluation noise. Draw 0 is the evaluation pipeline's, the SavedModel's and
  score.py's; draws 1, 2, ... are independent ones (the importance-weighted bound's
  extra samples). An image gets the same noise whatever batch, batch size or input
  pipeline it is in."""
  key = (transforms.element_seed(seed, EXTRA_NOISE, draw, index) if draw else
         transforms.element_seed(seed, EVALUATION_NOISE, index))
  return tf.random.stateless_uniform(image_shape, key, dtype=tf.float32)


def batch_noise(image_shape, seed, first_index, count, draw=0):
  """`image_noise` of the `count` images numbered from `first_index`: [count, ...]."""
  indices = tf.cast(first_index, tf.int64) + tf.range(tf.cast(count, tf.int64))
  return tf.map_fn(lambda i: image_noise(image_shape, seed, i, draw), indices,
                   fn_output_signature=tf.float32)
