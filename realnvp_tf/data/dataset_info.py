"""What a dataset is (`DatasetInfo`) and where its images come from (`DataSource`).

A `DataSource` serves the uint8 images of the splits "train", "validation" and "test"
(with their labels on request); a `DatasetInfo` says what the flow sees of them (shape,
K, split sizes, classes) and how the pipelines treat them (deterministic preprocessing,
crop, flips, caching). The pipelines know nothing else about a source: adding one (a
database, a bucket of files) is one `DataSource` subclass and a `DatasetInfo` naming it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Optional

import numpy as np

SPLITS = ("train", "validation", "test")
# Labels are scalars: large batches keep the host round trips of reading a split's
# labels few (ImageNet's 1.28 million in 20).
LABEL_BATCH = 65_536


def collect_labels(labels) -> np.ndarray:
  """The int32 labels of a `tf.data.Dataset` of scalar labels as one numpy array (an
  empty one for an empty dataset), read in batches of `LABEL_BATCH`."""
  return np.concatenate(list(labels.batch(LABEL_BATCH).as_numpy_iterator()) +
                        [np.zeros([0], np.int32)])


def check_split(name: str, split: str) -> None:
  """ValueError unless `split` is one of `SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"{name} has the splits {', '.join(SPLITS)}, not {split!r}.")


class DataSource(abc.ABC):
  """Where a dataset's images come from.

  `images(split, shuffle, seed, labels)` is a `tf.data.Dataset` of the split's uint8
  `[H, W, C]` images, in a fixed order (`shuffle`: the source may shuffle what it
  reads, e.g. files, with `seed`; the pipelines shuffle the images themselves); with
  `labels=True`, of `(image, int32 label)` pairs, labels in [0, num_classes).
  `split_labels(split)` is the split's labels alone, in the same order, read without
  decoding images where the source can. A source without labels raises ValueError
  from both when asked for them.

  The rest has defaults: `split_name` (how the source names a split, recorded in the
  fingerprint), `fingerprint()` (what else identifies the images, for resume checks),
  `located(data_dir, manual_dir)` (the source reading its files from there), and
  `prepare()` (make the data readable, e.g. download it; once, before the pipelines
  of a distributed run are built).
  """

  @abc.abstractmethod
  def images(self, split: str, shuffle: bool = False, seed: int = 0,
             labels: bool = False):
    """uint8 images of `split` (`(image, int32 label)` pairs with `labels`)."""

  @abc.abstractmethod
  def split_labels(self, split: str) -> np.ndarray:
    """The int32 labels of `split`, in `images`' order."""

  def split_name(self, split: str) -> str:
    return split

  def fingerprint(self) -> dict:
    """JSON-able values that identify the images beyond `DatasetInfo`'s fields."""
    return {"tfds_name": None}

  def located(self, data_dir: Optional[str] = None,
              manual_dir: Optional[str] = None) -> DataSource:
    del data_dir, manual_dir  # sources without files of their own
    return self

  def prepare(self) -> None:
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetInfo:
  """Static description of a dataset as the flow sees it.

  Attributes:
    name: the name used by this package (`DATASET_NAMES`, `tfds:NAME`, ...).
    image_shape: `(H, W, C)` of the images fed to the flow (after preprocessing).
    num_levels: K, the number of pixel values (pixels are integers 0..K-1).
    num_train, num_validation, num_test: images in each split (validation is held
      out from training; 0 when there is none).
    source: the `DataSource` that serves the images.
    random_flips: training applies random horizontal flips (the paper's augmentation).
    in_memory: the pipelines cache the decoded images in memory.
    preprocess: deterministic steps applied to every image the source gives, in
      order (e.g. `transforms.CentralCrop(148)`, then `transforms.Resize((64, 64))`).
    crop: `(height, width)` of a crop taken after `preprocess`: random in training,
      central in evaluation; `None` for no crop.
    num_classes: classes of the labels (0: the set has no class labels).
    class_names: the classes' names in label order (may be empty).
  """

  name: str
  image_shape: tuple[int, int, int]
  num_levels: int
  num_train: int
  num_validation: int
  num_test: int
  source: DataSource
  random_flips: bool = False
  in_memory: bool = False
  preprocess: tuple = ()
  crop: Optional[tuple[int, int]] = None
  num_classes: int = 0
  class_names: tuple = ()

  @property
  def num_dims(self) -> int:
    """D = H * W * C, the number of dimensions of one image."""
    height, width, channels = self.image_shape
    return height * width * channels

  def num_images(self, split: str) -> int:
    check_split(self.name, split)
    return {"train": self.num_train, "validation": self.num_validation,
            "test": self.num_test}[split]

  def located(self, data_dir: Optional[str] = None,
              manual_dir: Optional[str] = None) -> DatasetInfo:
    """This dataset with its source reading from `data_dir` (tfds's data directory)
    and `manual_dir` (the official raw files, for machines without internet)."""
    if data_dir is None and manual_dir is None:
      return self
    return dataclasses.replace(self, source=self.source.located(data_dir, manual_dir))
