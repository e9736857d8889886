"""A user's tf.data datasets as a `DataSource` (`from_tf_data`)."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.dataset_info import DataSource
from realnvp_tf.data.dataset_info import check_split
from realnvp_tf.data.dataset_info import collect_labels

# The dataset name of a run on datasets given to the Trainer.
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
class TfDataSource(DataSource):
  """A user's tf.data datasets, one per split, of uint8 [H, W, C] images (of
  `(image, label)` pairs when `num_classes` > 0)."""
  datasets: dict
  num_classes: int = 0

  def images(self, split, shuffle=False, seed=0, labels=False):
    del shuffle, seed  # the pipelines shuffle
    check_split(CUSTOM, split)
    dataset = self.datasets[split]
    if labels:
      return dataset.map(_checked_label(split, self.num_classes))
    if self.num_classes:
      return dataset.map(lambda image, label: image)
    return dataset

  def split_labels(self, split):
    """The int32 labels of a split, read through the dataset (checked)."""
    return collect_labels(
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
  return DatasetInfo(name=CUSTOM, image_shape=image_shape, num_levels=int(num_levels),
                     num_train=counts["train"], num_validation=counts["validation"],
                     num_test=counts["test"], source=TfDataSource(splits, num_classes),
                     in_memory=in_memory, num_classes=num_classes,
                     class_names=class_names)
