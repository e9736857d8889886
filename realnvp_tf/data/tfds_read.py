"""Reading a prepared tensorflow-datasets split: its images, or its labels alone."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from realnvp_tf.data import registry
from realnvp_tf.data import tfds_fetch
from realnvp_tf.data.registry import DatasetInfo


def read_images(info: DatasetInfo, split: str, shuffle_files: bool, data_dir,
                manual_dir, seed: int, labels: bool = False) -> tf.data.Dataset:
  """Decoded uint8 images (unbatched) of a tfds dataset's split; with `labels`,
  `(image, int32 label)` pairs (labels are dropped otherwise)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds_fetch.prepare_dataset(info, data_dir=data_dir, manual_dir=manual_dir)
  read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
  ds = builder.as_dataset(split=split, shuffle_files=shuffle_files,
                          read_config=read_config)
  key = info.image_key
  if labels:
    label_key = info.label_key
    return ds.map(lambda example: (example[key], tf.cast(example[label_key], tf.int32)),
                  num_parallel_calls=tf.data.AUTOTUNE)
  return ds.map(lambda example: example[key], num_parallel_calls=tf.data.AUTOTUNE)


def read_labels(info: DatasetInfo, split: str, data_dir, manual_dir) -> np.ndarray:
  """The int32 labels of a tfds dataset's split, in file order, read without the
  images (only the label feature is parsed: counting ImageNet's labels decodes no
  JPEG)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds_fetch.prepare_dataset(info, data_dir=data_dir, manual_dir=manual_dir)
  key = info.label_key
  ds = builder.as_dataset(split=split, read_config=tfds.ReadConfig(try_autocache=False),
                          decoders=tfds.decode.PartialDecoding({key: True}))
  return registry.collect_labels(
      ds.map(lambda example: tf.cast(example[key], tf.int32)))
