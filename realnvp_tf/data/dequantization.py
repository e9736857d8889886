"""Dequantization: the flow's event space is x + u, u ~ U[0, 1), for integer pixels x
in 0..K-1 (so that floor gives back the pixels)."""

import tensorflow as tf

# Seeds derived as `seed * SEED_STRIDE + index` differ for every (seed, index) with
# index < SEED_STRIDE: a prime larger than any epoch or noise-draw count.
SEED_STRIDE = 1_000_003


def derived_seed(seed, index):
  """The seed of stream `index` (an epoch's data, the index-th extra noise draw) of
  a run seeded `seed`."""
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


def per_image_noise(image_shape, count, seed):
  """U[0, 1) noise for `count` images of `image_shape`: image i gets
  `stateless_uniform(image_shape, (seed[0], seed[1] + i))`, so that a caller passing
  (s, index of the batch's first image) gets the same noise for an image whatever the
  batch size (the SavedModel's `bits_per_dim` and `ood_scores`)."""
  seeds = tf.stack([tf.fill([count], seed[0]), seed[1] + tf.range(count)], axis=1)
  return tf.map_fn(lambda s: tf.random.stateless_uniform(image_shape, s), seeds,
                   fn_output_signature=tf.float32)
