"""Which images a run means (`DataSpec`: a registered name, `tfds:NAME[/CONFIG]`, or a
folder), resolved to a `DatasetInfo`, and the fingerprint a run records of them."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Union

from realnvp_tf.data import image_folder
from realnvp_tf.data import tfds_describe
from realnvp_tf.data import transforms
from realnvp_tf.data.dataset_info import SPLITS
from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info
from realnvp_tf.data.tf_data_source import CUSTOM

# DataSpec.dataset of a run on an image folder.
IMAGE_DIR = "image_dir"


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """The settings that say which images a run means: a run records them with its
  model (`as_dict`), so evaluation reads the same images.

  Attributes:
    dataset: a registered name (`DATASET_NAMES`), `tfds:NAME[/CONFIG]` (any
      tensorflow-datasets image set, prepared when resolved), `IMAGE_DIR` (with
      `image_dir`), or `CUSTOM` (datasets given to a Trainer: nothing to resolve).
    image_dir: the folder, with `dataset=IMAGE_DIR` (see `image_folder`).
    image_size: "H", "HxW" or (H, W): resize to cover and centre-crop (needed for
      folders and tfds sets of varying size; optional otherwise).
    channels: 1 or 3, for folders.
    validation_fraction, test_fraction: a folder's hash split.
  """

  dataset: str = "mnist"
  image_dir: Optional[str] = None
  image_size: Union[str, tuple, None] = None
  channels: int = 3
  validation_fraction: float = 0.1
  test_fraction: float = 0.1

  def __post_init__(self):
    if isinstance(self.image_size, list):  # as JSON records it: hashable again
      object.__setattr__(self, "image_size", tuple(self.image_size))
    if (self.dataset == IMAGE_DIR) != bool(self.image_dir):
      raise ValueError(f"An image folder is dataset={IMAGE_DIR!r} with image_dir=DIR; "
                       f"got dataset={self.dataset!r}, image_dir={self.image_dir!r}.")
    if self.dataset == IMAGE_DIR and not self.image_size:
      raise ValueError("An image folder needs image_size=H or HxW.")
    if self.dataset not in (IMAGE_DIR, CUSTOM) and not tfds_describe.is_tfds_name(
        self.dataset):
      get_dataset_info(self.dataset)  # unknown names fail here, with the list

  @classmethod
  def from_dict(cls, values: dict) -> DataSpec:
    """The spec of a recorded dict (`as_dict`; missing keys take the defaults)."""
    return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls)
                  if values.get(field.name) is not None})

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def resolve(spec: Union[DataSpec, str], data_dir: str | None = None,
            manual_dir: str | None = None, fail_on_bad_images: bool = False,
            min_train_images: int = 1) -> DatasetInfo:
  """The `DatasetInfo` of `spec` (a `DataSpec`, or a dataset name), cached: a folder
  is decoded once per process, and again when its file list changed.

  Args:
    spec: which images.
    data_dir, manual_dir: tfds's data directory and official files.
    fail_on_bad_images: refuse a folder with files that cannot be decoded.
    min_train_images: fewer training images (of a folder) is an error (one batch).
  """
  if isinstance(spec, str):
    spec = DataSpec(spec)
  listing = None
  if spec.image_dir and os.path.isdir(spec.image_dir):
    listing = tuple(image_folder.list_images(spec.image_dir))
  return _resolve(spec, data_dir, manual_dir, fail_on_bad_images, min_train_images,
                  listing)


@functools.lru_cache(maxsize=8)
def _resolve(spec, data_dir, manual_dir, fail_on_bad_images, min_train_images,
             listing):
  del listing  # a key of the cache: a folder whose files changed is read again
  if spec.dataset == CUSTOM:
    raise ValueError("This run trained on datasets given to its Trainer "
                     "(data.from_tf_data); name a dataset or an image folder to "
                     "evaluate on.")
  size = image_folder.parse_size(spec.image_size) if spec.image_size else None
  if spec.dataset == IMAGE_DIR:
    source = image_folder.open_folder(
        spec.image_dir, size, spec.channels, spec.validation_fraction,
        spec.test_fraction, fail_on_bad_images, min_train_images)
    return image_folder.describe(source)
  if tfds_describe.is_tfds_name(spec.dataset):
    return tfds_describe.describe(spec.dataset, data_dir, manual_dir, size)
  info = get_dataset_info(spec.dataset, data_dir, manual_dir)
  if size is None or tuple(size) == tuple(info.image_shape[:2]):
    return info
  return dataclasses.replace(
      info, image_shape=tuple(size) + (info.image_shape[-1],), crop=None,
      preprocess=info.preprocess + (transforms.Fit(tuple(size)),))


def fingerprint(info: DatasetInfo) -> dict:
  """What defines the images of `info`, as a JSON-able dict a run records: the name,
  shape, K, classes and, per split, its definition and size, and what its source
  adds (a folder: a hash of each split's file list). Two equal fingerprints mean the
  same images in the same splits (the files' contents aside)."""
  values = dict(name=info.name, image_shape=list(info.image_shape),
                num_levels=info.num_levels, class_names=list(info.class_names),
                num_classes=info.num_classes,
                splits={split: [info.source.split_name(split), info.num_images(split)]
                        for split in SPLITS})
  values.update(info.source.fingerprint())
  return values
