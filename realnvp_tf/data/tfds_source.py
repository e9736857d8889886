"""A tensorflow-datasets set as a `DataSource`: its images, or its labels alone."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from realnvp_tf.data import tfds_fetch
from realnvp_tf.data.dataset_info import DataSource
from realnvp_tf.data.dataset_info import collect_labels


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsSource(DataSource):
  """The splits of the tfds builder `tfds_name`, prepared on first use.

  Attributes:
    name: the dataset's name in this package (for messages).
    tfds_name: tfds builder name (`NAME[/CONFIG]`).
    splits: the tfds split strings of "train", "validation" and "test" (any other
      split string is read as it is).
    image_key, label_key: the image and class label features.
    manual_files: file names tfds expects in `manual_dir` (checked before preparing).
    prepare_requires: modules tfds needs to prepare the set (checked before any
      download).
    file_owners: `() -> {SHA-256: dataset name}` of the official files of the sets
      this package knows, to say whose files a wrong `manual_dir` holds.
    data_dir, manual_dir: where tfds keeps the prepared set (its default when None),
      and the official raw files for machines without internet.
  """

  name: str
  tfds_name: str
  splits: dict
  image_key: str = "image"
  label_key: str = "label"
  manual_files: tuple[str, ...] = ()
  prepare_requires: tuple[str, ...] = ()
  file_owners: Callable[[], dict] = dict
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None

  def split_name(self, split):
    return self.splits.get(split, split)

  def fingerprint(self):
    return {"tfds_name": self.tfds_name}

  def located(self, data_dir=None, manual_dir=None):
    return dataclasses.replace(self, data_dir=data_dir, manual_dir=manual_dir)

  def prepare(self):
    """The prepared tfds builder (see `tfds_fetch.prepare`)."""
    return tfds_fetch.prepare(self, self.data_dir, self.manual_dir)

  def images(self, split, shuffle=False, seed=0, labels=False):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    ds = self.prepare().as_dataset(split=self.split_name(split), shuffle_files=shuffle,
                                   read_config=read_config)
    key, label_key = self.image_key, self.label_key
    if labels:
      return ds.map(lambda example: (example[key],
                                     tf.cast(example[label_key], tf.int32)),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda example: example[key], num_parallel_calls=tf.data.AUTOTUNE)

  def split_labels(self, split) -> np.ndarray:
    """Read without the images (only the label feature is parsed: counting
    ImageNet's labels decodes no JPEG)."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    key = self.label_key
    ds = self.prepare().as_dataset(
        split=self.split_name(split), read_config=tfds.ReadConfig(try_autocache=False),
        decoders=tfds.decode.PartialDecoding({key: True}))
    return collect_labels(ds.map(lambda example: tf.cast(example[key], tf.int32)))
