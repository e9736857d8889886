"""Which images a run means: a registered name, `tfds:NAME[/CONFIG]`, or a folder."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import tensorflow as tf

from realnvp_tf.data import image_folder
from realnvp_tf.data import registry
from realnvp_tf.data import tfds_describe
from realnvp_tf.data import transforms
from realnvp_tf.data.registry import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info

# TrainConfig.dataset of a run on an image folder.
IMAGE_DIR = "image_dir"
# The settings that say which images a run means (`resolve`'s first arguments): a
# run records them with its model, so evaluation reads the same images.
DATA_SPEC_FIELDS = ("dataset", "image_dir", "image_size", "channels",
                    "validation_fraction", "test_fraction")
# TrainConfig.dataset of a run on datasets given to the Trainer (`from_tf_data`).
CUSTOM = "custom"


def _checked_label(split, num_classes):
  """A map of `(image, label)` to `(image, int32 label)` that fails on a label outside
  [0, num_classes): a wrong label would silently train the wrong class."""
  message = (f"from_tf_data: a label of the {split} dataset is outside [0, "
             f"{num_classes}); labels must be class indices 0..{num_classes - 1}")

  def check(image, label):
    wide = tf.cast(label, tf.int64)
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(wide, tf.constant(0, tf.int64),
                                          message=message),
        tf.debugging.assert_less(wide, tf.constant(num_classes, tf.int64),
                                 message=message)]):
      return image, tf.cast(tf.identity(wide), tf.int32)

  return check


@dataclasses.dataclass(frozen=True, eq=False)
class TfDataSource:
  """A user's tf.data datasets, one per split, of uint8 [H, W, C] images (of
  `(image, label)` pairs when `num_classes` > 0)."""
  datasets: dict
  num_classes: int = 0

  def images(self, split, shuffle=False, seed=0, labels=False):
    del shuffle, seed  # the pipelines shuffle
    dataset = self.datasets[split]
    if labels:
      return dataset.map(_checked_label(split, self.num_classes))
    if self.num_classes:
      return dataset.map(lambda image, label: image)
    return dataset

  def split_labels(self, split):
    """The int32 labels of a split, read through the dataset (checked)."""
    return registry.collect_labels(
        self.images(split, labels=True).map(lambda image, label: label))


def _count(dataset):
  count = int(dataset.cardinality())
  if count < 0:  # unknown or infinite: count one pass
    count = int(dataset.reduce(0, lambda total, _: total + 1))
  return count


def _is_image(spec, image_shape):
  return (isinstance(spec, tf.TensorSpec) and spec.dtype == tf.uint8
          and spec.shape.is_compatible_with(image_shape))


def _check_elements(split, spec, image_shape, num_classes):
  """One-line ValueErrors for elements that are not what `num_classes` says."""
  if _is_image(spec, image_shape):
    if num_classes:
      raise ValueError(f"The {split} dataset holds images only but num_classes is "
                       f"{num_classes}; give (image, label) pairs (e.g. "
                       f"tf.data.Dataset.zip((images, labels))), or num_classes=0.")
    return
  pair = isinstance(spec, tuple) and len(spec) == 2 and _is_image(spec[0], image_shape)
  if pair and not num_classes:
    raise ValueError(f"The {split} dataset holds (image, label) pairs but num_classes "
                     f"is 0; pass num_classes to use the labels, or map the datasets "
                     f"to images only.")
  if pair and isinstance(spec[1], tf.TensorSpec) and spec[1].dtype.is_integer and (
      spec[1].shape.is_compatible_with([])):
    return
  what = (f"(uint8 image of shape {image_shape}, integer scalar label) pairs"
          if num_classes else f"uint8 images of shape {image_shape}")
  raise ValueError(f"The {split} dataset must hold {what} (unbatched); its elements "
                   f"are {spec}.")


def from_tf_data(train, validation, test, image_shape, num_levels=256,
                 in_memory=False, num_classes=0, class_names=()):
  """A `DatasetInfo` (for `Trainer(..., dataset_info=...)`, `make_dataset`) over
  tf.data datasets of uint8 `[H, W, C]` images with pixels 0..K-1, one per split
  (validation may be None: then training keeps the last weights).

  With `num_classes` > 0 the datasets hold `(image, label)` pairs instead, labels
  integers in [0, num_classes) (checked as they are read); `class_names` optionally
  names the classes in label order.

  The datasets are read as they are, each epoch: cache them first if they are
  expensive to produce, or pass `in_memory=True` to have the pipelines cache them.
  """
  image_shape = tuple(int(d) for d in image_shape)
  num_classes, class_names = int(num_classes), tuple(class_names)
  if num_classes < 0 or (class_names and len(class_names) != num_classes):
    raise ValueError(f"num_classes must be 0 or more and class_names empty or one "
                     f"name per class; got {num_classes} and {len(class_names)} names.")
  splits = {"train": train, "validation": validation, "test": test}
  for split, dataset in splits.items():
    if dataset is not None:
      _check_elements(split, dataset.element_spec, image_shape, num_classes)
  if validation is None:
    splits["validation"] = train.take(0)
  counts = {split: _count(dataset) for split, dataset in splits.items()}
  if not counts["train"] or not counts["test"]:
    raise ValueError("The train and test datasets must not be empty.")
  return DatasetInfo(CUSTOM, image_shape, int(num_levels), counts["train"],
                     counts["test"], "train", "test", None, in_memory=in_memory,
                     validation_split="validation",
                     num_validation=counts["validation"],
                     source=TfDataSource(splits, num_classes),
                     num_classes=num_classes, class_names=class_names)


def resolve(dataset: str, image_dir: str | None = None, image_size=None,
            channels: int = 3, validation_fraction: float = 0.1,
            test_fraction: float = 0.1, fail_on_bad_images: bool = False,
            data_dir: str | None = None, manual_dir: str | None = None,
            min_train_images: int = 1) -> DatasetInfo:
  """The `DatasetInfo` of a run's data (cached: a folder is decoded once per process,
  and again when its file list changed).

  Args:
    dataset: a registered name (`DATASET_NAMES`), `tfds:NAME[/CONFIG]` (any
      tensorflow-datasets image set, prepared here if needed), or `IMAGE_DIR`.
    image_dir: the folder, with `dataset=IMAGE_DIR` (see `image_folder`).
    image_size: "H", "HxW" or (H, W): resize to cover and centre-crop (needed for
      folders and tfds sets of varying size; optional otherwise).
    channels: 1 or 3, for folders.
    validation_fraction, test_fraction: a folder's hash split.
    fail_on_bad_images: refuse a folder with files that cannot be decoded.
    data_dir, manual_dir: tfds's data directory and official files.
    min_train_images: fewer training images (of a folder) is an error (one batch).
  """
  listing = None
  if image_dir and os.path.isdir(image_dir):
    listing = tuple(image_folder.list_images(image_dir))
  return _resolve(dataset, image_dir, image_size, channels, validation_fraction,
                  test_fraction, fail_on_bad_images, data_dir, manual_dir,
                  min_train_images, listing)


@functools.lru_cache(maxsize=8)
def _resolve(dataset, image_dir, image_size, channels, validation_fraction,
             test_fraction, fail_on_bad_images, data_dir, manual_dir, min_train_images,
             listing):
  del listing  # a key of the cache: a folder whose files changed is read again
  if dataset == CUSTOM:
    raise ValueError("This run trained on datasets given to its Trainer "
                     "(data.from_tf_data); pass --dataset or --image_dir to name "
                     "images to evaluate.")
  size = image_folder.parse_size(image_size) if image_size else None
  if dataset == IMAGE_DIR or image_dir:
    if not image_dir:
      raise ValueError(f"dataset={IMAGE_DIR!r} needs an image_dir.")
    if size is None:
      raise ValueError("--image_dir needs --image_size (H or HxW).")
    source = image_folder.open_folder(
        image_dir, size, channels, validation_fraction, test_fraction,
        fail_on_bad_images, min_train_images)
    return image_folder.describe(source)
  if tfds_describe.is_tfds_name(dataset):
    return tfds_describe.describe(dataset, data_dir, manual_dir, size)
  info = get_dataset_info(dataset)
  if size is None or tuple(size) == tuple(info.image_shape[:2]):
    return info
  return dataclasses.replace(
      info, image_shape=tuple(size) + (info.image_shape[-1],), crop=None,
      preprocess=info.preprocess + (transforms.Fit(tuple(size)),))


def fingerprint(info: DatasetInfo) -> dict:
  """What defines the images of `info`, as a JSON-able dict a run records: the name,
  shape, K, classes and, per split, its definition and size; for an image folder
  also a hash of each split's file list (relative paths, so a moved folder keeps
  it). Two equal fingerprints mean the same images in the same splits (the files'
  contents aside)."""
  values = dict(name=info.name, image_shape=list(info.image_shape),
                num_levels=info.num_levels, tfds_name=info.tfds_name,
                class_names=list(info.class_names), num_classes=info.num_classes,
                splits={"train": [info.train_split, info.num_train],
                        "validation": [info.validation_split, info.num_validation],
                        "test": [info.test_split, info.num_test]})
  if isinstance(info.source, image_folder.FolderSource):
    source = info.source
    values["files"] = {split: _list_hash(source.root, paths)
                       for split, paths in source.files.items()}
  return values


def _list_hash(root, paths):
  relative = "\n".join(sorted(os.path.relpath(path, root) for path in paths))
  return hashlib.sha256(relative.encode()).hexdigest()[:16]
