"""tensorflow-datasets without the network, for the data tests."""

import os

import tensorflow_datasets as tfds

from realnvp_tf.data import tfds_fetch


def mock_tfds(monkeypatch, **kwargs):
  """tfds.testing.mock_data, with the network check and prerequisites passing.

  Under mock_data tfds's download_and_prepare does nothing, so "online" is harmless.
  """
  monkeypatch.setattr(tfds_fetch, "network_available", lambda url, timeout=0: True)
  monkeypatch.setattr(tfds_fetch, "check_prepare_prerequisites", lambda info: None)
  return tfds.testing.mock_data(**kwargs)


def mock_metadata(data_dir, name, **num_examples):
  """Writes the dataset_info.json that tfds.testing.mock_data reads splits from.

  The pip release of tensorflow-datasets ships no mock metadata, so without this
  a mocked builder reports no splits at all.
  """
  from tensorflow_datasets.core import naming  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import splits as splits_lib  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=str(data_dir))
  splits = [splits_lib.SplitInfo(
      name=split, shard_lengths=[count], num_bytes=0,
      filename_template=naming.ShardedFileTemplate(
          data_dir=builder.data_dir, dataset_name=name, split=split,
          filetype_suffix="tfrecord"))
            for split, count in num_examples.items()]
  builder.info.set_splits(splits_lib.SplitDict(splits))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)
