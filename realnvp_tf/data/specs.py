"""Which images a run means: a registered name, `tfds:NAME[/CONFIG]`, or a folder."""

from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf

from realnvp_tf.data import image_folder
from realnvp_tf.data import tfds_prep
from realnvp_tf.data import transforms
from realnvp_tf.data.registry import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info

# TrainConfig.dataset of a run on an image folder.
IMAGE_DIR = "image_dir"
# TrainConfig.dataset of a run on datasets given to the Trainer (`from_tf_data`).
CUSTOM = "custom"


@dataclasses.dataclass(frozen=True, eq=False)
class TfDataSource:
  """A user's tf.data datasets, one per split, of uint8 [H, W, C] images."""
  datasets: dict

  def images(self, split, shuffle=False, seed=0):
    del shuffle, seed  # the pipelines shuffle
    return self.datasets[split]


def _count(dataset):
  count = int(dataset.cardinality())
  if count < 0:  # unknown or infinite: count one pass
    count = int(dataset.reduce(0, lambda total, _: total + 1))
  return count


def from_tf_data(train, validation, test, image_shape, num_levels=256,
                 in_memory=False):
  """A `DatasetInfo` (for `Trainer(..., dataset_info=...)`, `make_dataset`) over
  tf.data datasets of uint8 `[H, W, C]` images with pixels 0..K-1, one per split
  (validation may be None: then training keeps the last weights).

  The datasets are read as they are, each epoch: cache them first if they are
  expensive to produce, or pass `in_memory=True` to have the pipelines cache them.
  """
  image_shape = tuple(int(d) for d in image_shape)
  splits = {"train": train, "validation": validation, "test": test}
  for split, dataset in splits.items():
    if dataset is None:
      continue
    spec = dataset.element_spec
    if (not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.uint8
        or not spec.shape.is_compatible_with(image_shape)):
      raise ValueError(f"The {split} dataset must hold uint8 images of shape "
                       f"{image_shape} (unbatched); its elements are {spec}.")
  if validation is None:
    splits["validation"] = train.take(0)
  counts = {split: _count(dataset) for split, dataset in splits.items()}
  if not counts["train"] or not counts["test"]:
    raise ValueError("The train and test datasets must not be empty.")
  return DatasetInfo(CUSTOM, image_shape, int(num_levels), counts["train"],
                     counts["test"], "train", "test", None, in_memory=in_memory,
                     validation_split="validation",
                     num_validation=counts["validation"],
                     source=TfDataSource(splits))


@functools.lru_cache(maxsize=8)
def resolve(dataset: str, image_dir: str | None = None, image_size=None,
            channels: int = 3, validation_fraction: float = 0.1,
            test_fraction: float = 0.1, fail_on_bad_images: bool = False,
            data_dir: str | None = None, manual_dir: str | None = None,
            min_train_images: int = 1) -> DatasetInfo:
  """The `DatasetInfo` of a run's data (cached: a folder is decoded once).

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
  if dataset.startswith(tfds_prep.TFDS_PREFIX):
    return tfds_prep.describe(dataset, data_dir, manual_dir, size)
  info = get_dataset_info(dataset)
  if size is None or tuple(size) == tuple(info.image_shape[:2]):
    return info
  return dataclasses.replace(
      info, image_shape=tuple(size) + (info.image_shape[-1],), crop=None,
      preprocess=info.preprocess + (transforms.Fit(tuple(size)),))
