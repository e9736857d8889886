"""A folder of image files as a dataset: splits, decoding, resizing, bad files.

Every PNG, JPEG, BMP or GIF under the folder (recursively; hidden files and folders
are left out) is an image. Splits: the subfolders `train/`, `validation/` and `test/`
when `train/` exists (a missing validation or test split is held out of train/ as
below); otherwise each file's split is decided by a hash of its path relative to the
folder, so a file always lands in the same split, whatever is added later. Images
are resized (antialiased) to cover the target size, centre-cropped to it, and
converted to the channel count; K = 256.

Class labels: the subfolders of train/ (of the folder itself without split folders)
are the classes, in sorted order, when every image sits in one and there are at least
two; validation/ and test/ then hold the same class folders. Other folders have no
class labels and train unconditionally.

Every file is decoded once when the folder is opened: files that cannot be decoded
are left out and reported once (or refused, with `fail_on_bad_images`), and when the
decoded images fit in memory they are kept there, so later epochs decode nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from realnvp_tf.data import errors
from realnvp_tf.data import registry
from realnvp_tf.data import transforms
from realnvp_tf.data.dataset_info import SPLITS
from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.dataset_info import DataSource
from realnvp_tf.data.dataset_info import check_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Decoded images up to this size are held in memory (uint8 bytes; tf.data takes them
# as one constant per split, which must stay under 2 GB).
IN_MEMORY_BYTES = 1024**3


class ImageFolderError(ValueError):
  """The folder cannot serve as a dataset (missing, empty, too few images)."""


def parse_size(text) -> tuple[int, int]:
  """"64" -> (64, 64); "64x48" -> (64, 48) (height x width)."""
  if isinstance(text, (tuple, list)):
    height, width = (int(d) for d in text)
  else:
    parts = str(text).lower().split("x")
    try:
      if len(parts) not in (1, 2):
        raise ValueError
      height, width = int(parts[0]), int(parts[-1])
    except ValueError:
      raise ValueError(f"image_size={text} is not a size; use H or HxW, e.g. 64 or "
                       f"64x48.") from None
  if height <= 0 or width <= 0:
    raise ValueError(f"image_size={text}: sides must be positive.")
  return height, width


def list_images(root: str) -> list[str]:
  """Image files under `root`, as sorted paths relative to it."""
  found = []
  for folder, subfolders, names in os.walk(root):
    subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
    for name in names:
      if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(folder, name), root))
  return sorted(found)


def hash_fraction(relative_path: str) -> float:
  """A number in [0, 1) fixed by the path alone (SHA-256 of its '/'-joined parts)."""
  key = "/".join(relative_path.split(os.sep)).encode("utf-8")
  return int(hashlib.sha256(key).hexdigest()[:16], 16) / 2.0**64


def split_by_hash(relative_paths, validation_fraction, test_fraction):
  """{split: paths}: a path whose hash fraction is below `validation_fraction` is
  validation, below `validation_fraction + test_fraction` test, the rest train."""
  splits = {split: [] for split in SPLITS}
  for path in relative_paths:
    fraction = hash_fraction(path)
    split = ("validation" if fraction < validation_fraction else
             "test" if fraction < validation_fraction + test_fraction else "train")
    splits[split].append(path)
  return splits


def find_splits(root, validation_fraction=0.1, test_fraction=0.1):
  """{split: [absolute paths]} of the folder (see the module docstring)."""
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise ImageFolderError(f"image_dir={root}: no such directory.")
  if not 0.0 <= validation_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or (
      validation_fraction + test_fraction >= 1.0):
    raise ValueError(
        f"validation_fraction ({validation_fraction}) and test_fraction "
        f"({test_fraction}) must be in [0, 1) with a sum below 1.")
  if os.path.isdir(os.path.join(root, "train")):
    splits = {split: [os.path.join(root, split, path) for path in
                      list_images(os.path.join(root, split))]
              if os.path.isdir(os.path.join(root, split)) else None
              for split in SPLITS}
    held_out = split_by_hash(
        [os.path.relpath(p, os.path.join(root, "train")) for p in splits["train"]],
        validation_fraction if splits["validation"] is None else 0.0,
        test_fraction if splits["test"] is None else 0.0)
    for split in ("validation", "test"):
      if splits[split] is None:
        splits[split] = [os.path.join(root, "train", p) for p in held_out[split]]
    splits["train"] = [os.path.join(root, "train", p) for p in held_out["train"]]
    return splits
  by_hash = split_by_hash(list_images(root), validation_fraction, test_fraction)
  return {split: [os.path.join(root, p) for p in paths]
          for split, paths in by_hash.items()}


def decode(contents, channels):
  """Any PNG/JPEG/BMP/GIF (first frame) -> uint8 [H, W, channels]."""
  image = tf.io.decode_image(contents, channels=0, expand_animations=False)
  present = tf.shape(image)[-1]
  # Gray + alpha and RGBA: the alpha channel is dropped.
  image = tf.cond(tf.equal(present, 2), lambda: image[..., :1],
                  lambda: tf.cond(tf.equal(present, 4), lambda: image[..., :3],
                                  lambda: image))
  if channels == 1:
    return tf.cond(tf.equal(tf.shape(image)[-1], 3),
                   lambda: tf.image.rgb_to_grayscale(image), lambda: image)
  return tf.cond(tf.equal(tf.shape(image)[-1], 1),
                 lambda: tf.image.grayscale_to_rgb(image), lambda: image)


def load_image(path, size, channels):
  """A file -> uint8 [height, width, channels], as training uses it."""
  return transforms.fit(decode(tf.io.read_file(path), channels), size, channels)


@dataclasses.dataclass(frozen=True, eq=False)
class FolderSource(DataSource):
  """The images of one folder, decoded once; `images(split, ...)` serves a split."""

  root: str
  image_shape: tuple
  files: dict  # split -> tuple of good paths
  arrays: Optional[dict] = None  # split -> uint8 array, when held in memory
  class_names: tuple = ()  # sorted class folder names; empty without class labels
  label_arrays: Optional[dict] = None  # split -> int32 labels, aligned with files
  no_labels_reason: str = ""  # why the folder has no class labels (none found)
  label_error: str = ""  # why labels cannot be served although classes exist

  def check_labels(self):
    """Raises ImageFolderError when the folder cannot label its images."""
    if not self.class_names:
      raise ImageFolderError(registry.no_labels_message(describe(self)))
    if self.label_error:
      raise ImageFolderError(self.label_error)

  def split_labels(self, split):
    """The int32 labels of a split's images, in `files` order."""
    check_split(self.root, split)
    self.check_labels()
    return self.label_arrays[split]

  def fingerprint(self):
    """A hash of each split's file list (relative paths: a moved folder keeps it)."""
    return {"tfds_name": None,
            "files": {split: _list_hash(self.root, paths)
                      for split, paths in self.files.items()}}

  def images(self, split, shuffle=False, seed=0, labels=False):
    """uint8 images of a split; `(image, int32 label)` pairs with `labels`."""
    check_split(self.root, split)
    if labels:
      self.check_labels()
    if self.arrays is not None:  # the pipeline caches and shuffles them all
      if labels:
        return tf.data.Dataset.from_tensor_slices(
            (self.arrays[split], self.label_arrays[split]))
      return tf.data.Dataset.from_tensor_slices(self.arrays[split])
    height, width, channels = self.image_shape
    paths = tf.constant(list(self.files[split]), tf.string,
                        shape=[len(self.files[split])])
    if labels:  # shuffled with their paths
      paths = (paths, tf.constant(self.label_arrays[split], tf.int32))
    paths = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
      # The pipeline's shuffle buffer holds a few thousand decoded images: files
      # sorted by class folder would stay in runs of one class without this.
      paths = paths.shuffle(len(self.files[split]), seed=seed,
                            reshuffle_each_iteration=True)
    load = lambda path: load_image(path, (height, width), channels)  # noqa: E731
    if labels:
      return paths.map(lambda path, label: (load(path), label),
                       num_parallel_calls=tf.data.AUTOTUNE)
    return paths.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def decoded_files(paths, load):
  """(int64 index, `load(the file's bytes)`) of every file of `paths` that loads, in
  order, as a tf.data.Dataset (`load` decodes, e.g. with `decode`).

  A file that fails is left out here, whatever the error (tf.data cannot tell them
  apart); `undecodable` then tells the files that are not images (skipped) from the
  others (an error naming the file and its cause).
  """
  indexed = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(paths), dtype=tf.int64), tf.constant(list(paths), tf.string)))
  return indexed.map(lambda i, path: (i, load(tf.io.read_file(path))),
                     num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True).ignore_errors()


def undecodable(paths, channels):
  """The files of `paths` (left out by `decoded_files`) that are not decodable images.

  Each is read and decoded again, so that only decoding errors count: any other
  failure (it cannot be read now, it runs out of memory) raises OSError naming the
  file and the cause, and so does a file that now decodes (a failure that passed).
  """
  bad = []
  for path in paths:
    try:
      decode(tf.io.read_file(path), channels)
    except tf.errors.InvalidArgumentError:  # what decoders raise on bad data
      bad.append(path)
    except tf.errors.OpError as e:
      raise OSError(f"{path} cannot be read: {errors.first_line(e)}") from None
    else:
      raise OSError(f"{path} failed to load and decodes when read again: a read "
                    f"error that passed (a network disk?); run again.")
  return bad


def _decode_all(paths, size, channels):
  """Decodes every path in parallel: (uint8 array of the good ones, good paths, bad
  paths: those that are not images; other errors raise)."""
  if not paths:
    return np.zeros((0,) + tuple(size) + (channels,), np.uint8), [], []

  def load(contents):
    return transforms.fit(decode(contents, channels), size, channels)

  indices, arrays = [], []
  for batch_indices, batch_images in decoded_files(paths, load).batch(256):
    indices.append(batch_indices.numpy())
    arrays.append(batch_images.numpy())
  good = np.concatenate(indices) if indices else np.zeros([0], np.int64)
  images = (np.concatenate(arrays) if arrays else
            np.zeros((0,) + tuple(size) + (channels,), np.uint8))
  good_set = set(good.tolist())
  bad = undecodable([paths[i] for i in range(len(paths)) if i not in good_set],
                    channels)
  return images, [paths[i] for i in good], bad


def _place(root, path, split_folders):
  """(split folder or "", class folder or None) of a file: its class is its first
  folder under the split root (train/, validation/ or test/ when the folder has
  split folders, else the folder itself); a loose file has none."""
  parts = os.path.relpath(path, root).split(os.sep)
  split_folder, rest = (parts[0], parts[1:]) if split_folders else ("", parts)
  return split_folder, rest[0] if len(rest) > 1 else None


def listing(names, shown=5):
  """The first `shown` names, comma-separated (", ..." when there are more): how
  messages list files."""
  return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _folder_labels(root, files):
  """`FolderSource` fields of the class labels of `files` (split -> good paths).

  Classes are the sorted class folders of train/ (of the folder itself without split
  folders), so labels are stable as images are added. A folder has class labels only
  when every image sits in a class folder and there are at least two: otherwise it
  trains unconditionally, as before labels existed.
  """
  root = os.path.expanduser(root)
  split_folders = os.path.isdir(os.path.join(root, "train"))
  places = {split: [_place(root, path, split_folders) for path in paths]
            for split, paths in files.items()}
  everything = [place for split_places in places.values() for place in split_places]
  loose = [path for split, paths in files.items()
           for path, (_, name) in zip(paths, places[split], strict=True)
           if name is None]
  classes = sorted({name for folder, name in everything
                    if name is not None and folder in ("", "train")})
  if loose:
    example = os.path.relpath(loose[0], root)
    return {"no_labels_reason": f"image_dir={root}: {len(loose)} of "
                                f"{len(everything)} images sit outside class "
                                f"subfolders, e.g. {example}"}
  if len(classes) < 2:
    found = f"only the class folder {classes[0]}" if classes else "no class folders"
    return {"no_labels_reason": f"image_dir={root} has {found}; labels need two"}
  index = {name: label for label, name in enumerate(classes)}
  unknown = sorted({f"{folder}/{name}/" for folder, name in everything
                    if name not in index})
  label_error = "" if not unknown else (
      f"image_dir={root}: class folders missing from train/ ({listing(unknown)}), "
      f"so their images have no label; rename them to classes of train/ "
      f"({listing(classes)}) or add those classes to train/.")
  return {"class_names": tuple(classes), "label_error": label_error,
          "label_arrays": {split: np.array([index.get(name, -1) for _, name in
                                            split_places], np.int32)
                           for split, split_places in places.items()}}


def open_folder(root, image_size, channels, validation_fraction=0.1,
                test_fraction=0.1, fail_on_bad_images=False, min_train_images=1,
                max_in_memory_bytes=IN_MEMORY_BYTES):
  """Splits, decodes and checks a folder: returns a `FolderSource`.

  Every file is decoded once here, to find the bad ones; when the decoded images
  take at most `max_in_memory_bytes` they are kept, else training decodes the files
  again each epoch.

  Raises:
    ImageFolderError: no such folder, no image files, no decodable image, fewer
      training images than `min_train_images` (one batch), or (with
      `fail_on_bad_images`) any file that cannot be decoded.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3; got {channels}.")
  size = parse_size(image_size)
  splits = find_splits(root, validation_fraction, test_fraction)
  total = sum(len(paths) for paths in splits.values())
  if not total:
    raise ImageFolderError(
        f"image_dir={root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}, "
        f"searched recursively).")
  image_bytes = size[0] * size[1] * channels
  in_memory = total * image_bytes <= max_in_memory_bytes
  files, arrays, bad = {}, {}, []
  for split, paths in splits.items():
    images, good, failed = _decode_all(paths, size, channels)
    files[split], bad = tuple(good), bad + failed
    if in_memory:
      arrays[split] = images
  if not sum(len(good) for good in files.values()):
    raise ImageFolderError(f"image_dir={root}: none of its {total} image files can "
                           f"be decoded.")
  if bad:
    listed = listing(bad)
    if fail_on_bad_images:
      raise ImageFolderError(f"image_dir={root}: {len(bad)} of {total} files cannot "
                             f"be decoded as images: {listed}.")
    logging.warning("image_dir=%s: %d of %d files cannot be decoded as images and "
                    "are left out: %s", root, len(bad), total, listed)
  if len(files["train"]) < min_train_images:
    raise ImageFolderError(
        f"image_dir={root} has {len(files['train'])} training images, fewer than "
        f"one batch ({min_train_images}); add images or lower batch_size.")
  return FolderSource(root, tuple(size) + (channels,), files,
                      arrays if in_memory else None, **_folder_labels(root, files))


def _list_hash(root, paths):
  relative = "\n".join(sorted(os.path.relpath(path, root) for path in paths))
  return hashlib.sha256(relative.encode()).hexdigest()[:16]


def describe(source, name="image_dir"):
  """The `DatasetInfo` of a `FolderSource`."""
  counts = {split: len(paths) for split, paths in source.files.items()}
  return DatasetInfo(
      name=name, image_shape=source.image_shape, num_levels=256,
      num_train=counts["train"], num_validation=counts["validation"],
      num_test=counts["test"], source=source, in_memory=source.arrays is not None,
      num_classes=len(source.class_names), class_names=source.class_names)

