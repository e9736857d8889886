"""Figures of a trained model: sample grids (a row per class for a class-conditional
model) and the paper's latent manifold, as uint8 images and PNG files."""

import math
import os

import numpy as np
import tensorflow as tf

from realnvp_tf.model import conditional


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


def sample_grid(model, temperature, seed, num_samples=64, per_class=8):
  """A uint8 grid image of a loaded model's samples at `temperature`: `num_samples`
  of them, or for a class-conditional model a row per class of `per_class` each."""
  labels, columns = None, None
  if model.num_classes:
    labels, columns = conditional.grid_labels(model.num_classes, per_class), per_class
  out = model.sample(None if model.num_classes else num_samples,
                     temperature=temperature, seed=seed, labels=labels)
  return image_grid(out["images"].numpy(), model.num_levels, columns=columns)


def manifold_grid(model, batch, size=8):
  """The paper's figure of the latent manifold (its equation 19).

  With z1..z4 the latents of four images of `batch` (images, or (images, labels) as
  an evaluation dataset gives them), decodes
    z = cos(a) (cos(b) z1 + sin(b) z2) + sin(a) (cos(b) z3 + sin(b) z4)
  over a `size` x `size` grid of angles a, b in [0, pi/2]. With labels (a
  class-conditional model), it uses four images of the first image's class and
  decodes with that class.
  """
  images, *labels = batch if isinstance(batch, tuple) else (batch,)
  images, cls = np.asarray(images), None
  if labels:
    labels = np.asarray(labels[0])
    cls = int(labels[0])
    images = images[labels == cls]
    if len(images) < 4:
      raise ValueError(f"The manifold figure needs 4 images of class {cls} in the "
                       f"first batch.")

  def per_image(n):
    return None if cls is None else np.full([n], cls, np.int32)

  z = model.encode(images[:4], labels=per_image(4)).numpy()
  angles = np.linspace(0.0, np.pi / 2, size)
  a, b = np.meshgrid(angles, angles, indexing="ij")
  a, b = a.reshape(-1, 1, 1, 1), b.reshape(-1, 1, 1, 1)
  z1, z2, z3, z4 = (z[i][None] for i in range(4))
  latents = (np.cos(a) * (np.cos(b) * z1 + np.sin(b) * z2) +
             np.sin(a) * (np.cos(b) * z3 + np.sin(b) * z4)).astype(np.float32)
  decoded = model.decode(latents, labels=per_image(len(latents)))["images"].numpy()
  return image_grid(decoded, model.num_levels, columns=size)


def write_png(path, image):
  tf.io.gfile.makedirs(os.path.dirname(os.path.abspath(path)))
  tf.io.write_file(path, tf.io.encode_png(image))
