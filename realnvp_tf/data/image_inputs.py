"""Images to score, from wherever a user has them, brought to a model's images.

Sources (`open_inputs`):

- a folder: every PNG/JPEG/BMP/GIF under it, recursively (as for training);
- a glob pattern (`photos/*.jpg`, `**` recursive): every file it matches;
- a `.npy` array, or a `.npz` archive (its array `images`, its only array, or the one
  named after a colon: `data.npz:x_test`): uint8 (or integer-valued) pixels 0..255,
  shaped [N, H, W] or [N, H, W, C];
- a dataset split (`dataset_inputs`): a registered name or tfds:NAME.

Every image is brought to the model's images the way training brings a folder's:
converted to the model's channels (grey <-> RGB), resized with antialiasing to cover
the model's size and centre-cropped to it, then mapped to the model's K levels
(floor(x * K / levels of the source)). Files that are not decodable images are left
out and listed (`ImageInputs.bad_files(served indices)` says which, once the images
were read); a file that cannot be read stops the reading with its own error.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from realnvp_tf.data import image_folder
from realnvp_tf.data import transforms

ARRAY_EXTENSIONS = (".npy", ".npz")


class ImageInputError(ValueError):
  """The images cannot be read (missing, empty, not images, wrong array)."""


@dataclasses.dataclass
class ImageInputs:
  """Images to score. `images`: unbatched (index, uint8 image) pairs in a fixed
  order, the model's shape; `name(i)`: what rows call image i (its path, or the
  array/split and index); `count`: how many there are (files: before decoding)."""

  description: str
  images: tf.data.Dataset
  count: int
  name: Callable[[int], str]
  paths: Optional[list] = None  # files, when the images are files
  channels: int = 3  # what the files are decoded to

  def bad_files(self, seen_indices):
    """The files whose index was never served: they are not decodable images (any
    other reason raises OSError, see `image_folder.undecodable`)."""
    if self.paths is None:
      return []
    seen = set(int(i) for i in seen_indices)
    return image_folder.undecodable(
        [path for i, path in enumerate(self.paths) if i not in seen], self.channels)


def adapt(image, image_shape, num_levels, source_levels=256):
  """One uint8 image [h, w, c] (c = 1 or 3) -> the model's [H, W, C] with K levels."""
  height, width, channels = image_shape
  present = image.shape[-1]
  if present != channels:
    image = (tf.image.rgb_to_grayscale(image) if channels == 1
             else tf.image.grayscale_to_rgb(image))
  if tuple(image.shape[:2]) != (height, width):
    image = transforms.fit(image, (height, width))
  if source_levels != num_levels:
    scaled = tf.floor(tf.cast(image, tf.float32) * (num_levels / source_levels))
    image = tf.cast(tf.minimum(scaled, num_levels - 1), tf.uint8)
  image.set_shape(image_shape)
  return image


def _file_inputs(paths, description, image_shape, num_levels):
  height, width, channels = image_shape

  def load(contents):
    image = image_folder.decode(contents, channels)
    return adapt(transforms.fit(image, (height, width), channels), image_shape,
                 num_levels)

  images = image_folder.decoded_files(paths, load)
  return ImageInputs(description, images, len(paths), lambda i: paths[i], list(paths),
                     channels)


def _folder(root, image_shape, num_levels, argument):
  if not os.path.isdir(root):
    raise ImageInputError(f"{argument}={root}: no such directory, file or pattern.")
  paths = [os.path.join(root, p) for p in image_folder.list_images(root)]
  if not paths:
    raise ImageInputError(
        f"{argument}={root} holds no image files "
        f"({', '.join(image_folder.IMAGE_EXTENSIONS)}"
        f", searched recursively).")
  return _file_inputs(paths, f"{len(paths)} files under {root}", image_shape,
                      num_levels)


def _glob(pattern, image_shape, num_levels, argument):
  paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
  if not paths:
    raise ImageInputError(f"{argument}={pattern} matches no files.")
  return _file_inputs(paths, f"{len(paths)} files matching {pattern}", image_shape,
                      num_levels)


def _read_array(spec, argument):
  path, key = (spec.rsplit(":", 1) if ":" in spec and not os.path.exists(spec)
               else (spec, ""))
  if not os.path.isfile(path):
    raise ImageInputError(f"{argument}={spec}: no such file.")
  try:
    loaded = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise ImageInputError(
        f"{argument}={spec} cannot be read as a NumPy file: {e}") from None
  if isinstance(loaded, np.ndarray):
    return loaded, os.path.basename(path)
  with loaded:
    names = list(loaded.files)
    if not key:
      key = ("images" if "images" in names else names[0] if len(names) == 1 else None)
    if key not in names:
      raise ImageInputError(
          f"{argument}={spec}: the archive holds {', '.join(names) or 'no arrays'}; "
          f"name one as {argument}={path}:NAME.")
    return loaded[key], f"{os.path.basename(path)}:{key}"


def _array(spec, image_shape, num_levels, argument):
  array, label = _read_array(spec, argument)
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4 or array.shape[-1] not in (1, 3) or not array.shape[0]:
    raise ImageInputError(
        f"{argument}={spec} holds an array of shape {array.shape}; pass images shaped "
        f"[N, H, W] or [N, H, W, C] with C = 1 or 3.")
  if array.dtype != np.uint8:
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)) or (
        np.any(array != np.round(array))) or array.min() < 0 or array.max() > 255:
      raise ImageInputError(
          f"{argument}={spec} holds {array.dtype} values that are not integer pixels "
          f"0..255; pass uint8 images (scale [0, 1] floats by 255 and round).")
    array = array.astype(np.uint8)
  images = tf.data.Dataset.from_tensor_slices(
      (tf.range(array.shape[0], dtype=tf.int64), array))
  images = images.map(lambda i, image: (i, adapt(image, image_shape, num_levels)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ImageInputs(f"{array.shape[0]} images of {label}", images, array.shape[0],
                     lambda i: f"{label}[{i}]")


def open_inputs(spec, image_shape, num_levels, argument="images"):
  """`ImageInputs` of a folder, a glob pattern or a .npy/.npz file (see the module
  docstring). Raises `ImageInputError` with the problem and the fix (naming the
  `argument` that gave `spec`: a function's, or a program's argument)."""
  spec = os.fspath(spec)
  if not spec:
    raise ImageInputError(f"{argument} is empty; pass a folder, a glob pattern, or a "
                          f".npy/.npz file.")
  expanded = os.path.expanduser(spec)
  if expanded.split(":")[0].lower().endswith(ARRAY_EXTENSIONS):
    return _array(expanded, image_shape, num_levels, argument)
  if glob.has_magic(expanded) and not os.path.exists(expanded):
    return _glob(expanded, image_shape, num_levels, argument)
  if os.path.isfile(expanded):
    return _file_inputs([expanded], expanded, image_shape, num_levels)
  return _folder(expanded, image_shape, num_levels, argument)


def dataset_inputs(info, split, image_shape, num_levels, uint8_images):
  """`ImageInputs` of a dataset's split: `uint8_images` its unbatched images
  (`make_uint8_dataset`), `info` its `DatasetInfo`."""
  images = uint8_images.enumerate().map(
      lambda i, image: (i, adapt(image, image_shape, num_levels, info.num_levels)),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  label = f"{info.name}/{split}"
  count = info.num_images(split) if split in ("train", "validation", "test") else None
  return ImageInputs(f"{label}", images, count, lambda i: f"{label}[{i}]")
