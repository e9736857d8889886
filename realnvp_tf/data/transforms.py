"""Image steps of the input pipelines: resizing, crops, flips, and the seeds of their
random draws (the noise of dequantization is `dequantization`'s).

The deterministic steps (`Resize`, `CentralCrop`, `ResizeSmallestSide`, `Fit`) are
small frozen dataclasses, so that a dataset's registry entry can list them as data;
each maps a uint8 `[H, W, C]` image to a uint8 image. `random_flip_batch` flips a
batch's images at random; `element_seed` gives each image its own stateless seed.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


def to_pixels(image: tf.Tensor, num_levels: int) -> tf.Tensor:
  """Rounds and clips a resized image back to integer pixels 0..K-1 (uint8)."""
  image = tf.clip_by_value(tf.round(image), 0.0, float(num_levels - 1))
  return tf.cast(image, tf.uint8)


def resize(image: tf.Tensor, size, num_levels: int = 256) -> tf.Tensor:
  """Bilinear resize with antialiasing, back to integer pixels."""
  image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear",
                          antialias=True)
  return to_pixels(image, num_levels)


def center_crop(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
  shape = tf.shape(image)
  top = (shape[0] - height) // 2
  left = (shape[1] - width) // 2
  return tf.image.crop_to_bounding_box(image, top, left, height, width)


@dataclasses.dataclass(frozen=True)
class CentralCrop:
  """The central `size` x `size` window (padded with zeros if the image is smaller)."""
  size: int

  def __call__(self, image):
    return tf.image.resize_with_crop_or_pad(image, self.size, self.size)


@dataclasses.dataclass(frozen=True)
class Resize:
  """Resize to `size` = (height, width), antialiased."""
  size: tuple

  def __call__(self, image):
    return resize(image, self.size)


@dataclasses.dataclass(frozen=True)
class ResizeSmallestSide:
  """Resize so that the smallest side is `size` pixels, keeping the aspect ratio."""
  size: int

  def __call__(self, image):
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_size = tf.cast(tf.round(hw * (self.size / tf.reduce_min(hw))), tf.int32)
    return resize(image, tf.maximum(new_size, self.size))


def fit(image: tf.Tensor, size, channels=None) -> tf.Tensor:
  """Resizes (antialiased, aspect ratio kept) to cover `size` = (height, width), then
  centre-crops to it. The result's static shape is (height, width, `channels`): the
  crop's own is unknown, and the batching that follows needs it."""
  height, width = size
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.maximum(height / shape[0], width / shape[1])
  covering = tf.cast(tf.math.ceil(shape * scale - 1e-3), tf.int32)
  covering = tf.maximum(covering, [height, width])
  image = center_crop(resize(image, covering), height, width)
  image.set_shape((height, width, channels))
  return image


@dataclasses.dataclass(frozen=True)
class Fit:
  """`fit` to `size` = (height, width): cover, then centre-crop."""
  size: tuple

  def __call__(self, image):
    return fit(image, self.size)


def random_flip_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Flips each image of a [B, H, W, C] batch left-right with probability 1/2."""
  flip = tf.random.stateless_uniform(tf.shape(images)[:1], seed=seed) < 0.5
  return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def element_seed(seed, stream: int, *indices) -> tf.Tensor:
  """A stateless-RNG seed (shape [2], int64) for `(seed, stream, *indices)`; `seed`
  and the indices may be tensors."""
  key = tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])
  for index in indices:
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))
  return key
