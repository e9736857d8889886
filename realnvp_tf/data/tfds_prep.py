"""Preparing tensorflow-datasets sets, online or from the official files, and reading them.

Offline use: pass `manual_dir` (the official raw files, as tfds expects them) and
optionally `data_dir` (where tfds writes the prepared dataset). When the data is not
prepared, no `manual_dir` is given and the download host cannot be reached, a
`DataUnavailableError` is raised within seconds instead of tfds's minutes of retries.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import importlib
import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf

from realnvp_tf.data import transforms
from realnvp_tf.data.registry import DATASET_NAMES
from realnvp_tf.data.registry import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info

# Seconds the network check waits for a TCP connection to a download host.
NETWORK_TIMEOUT_S = 3.0


class DataUnavailableError(RuntimeError):
  """The dataset is neither prepared nor obtainable (no network, missing files)."""


TFDS_PREFIX = "tfds:"
# Checked for network access when a tfds set registers no download URL of its own.
_FALLBACK_HOST = "https://storage.googleapis.com"
# Validation held out of the training split of a tfds set that has none besides its
# test split: the last images, at most this many and at most a tenth.
TFDS_HELD_OUT = 5_000


def download_urls(info: DatasetInfo) -> list[str]:
  """The tfds download URLs of `info`'s files (from tfds's registered checksums; all
  of them for a set without a list of files)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder_name = info.tfds_name.split("/")[0]
  url_infos = tfds.builder_cls(builder_name).url_infos or {}
  wanted = set(info.manual_files)
  return sorted(url for url, ui in url_infos.items()
                if not wanted or ui.filename in wanted)


def network_available(url: str, timeout: float = NETWORK_TIMEOUT_S) -> bool:
  """Whether a TCP connection to `url`'s host can be opened within `timeout` s.

  Name resolution has no timeout of its own, so the whole check runs in a thread that
  is given up after `timeout + 1` seconds. Tests replace this function.
  """
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname
  port = parts.port or (443 if parts.scheme == "https" else 80)

  def connect() -> bool:
    try:
      with socket.create_connection((host, port), timeout=timeout):
        return True
    except OSError:
      return False

  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  try:
    return pool.submit(connect).result(timeout=timeout + 1.0)
  except concurrent.futures.TimeoutError:
    return False
  finally:
    pool.shutdown(wait=False)


def official_checksums(info: DatasetInfo) -> dict[str, str]:
  """{file name: SHA-256} of `info`'s official files, as tfds registers them (empty
  where tfds registers none)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  url_infos = tfds.builder_cls(info.tfds_name.split("/")[0]).url_infos or {}
  wanted = set(info.manual_files)
  return {ui.filename: ui.checksum for ui in url_infos.values()
          if ui.filename in wanted and ui.checksum}


@functools.lru_cache(maxsize=1)
def _checksum_owners() -> dict[str, str]:
  """{SHA-256: dataset name} over every dataset of the registry."""
  owners = {}
  for name in DATASET_NAMES:
    info = get_dataset_info(name)
    if info.tfds_name is not None:
      for digest in official_checksums(info).values():
        owners.setdefault(digest, name)
  return owners


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify_manual_files(info: DatasetInfo, manual_dir: str) -> None:
  """Refuses files in `manual_dir` that are not `info`'s official ones (by the
  SHA-256 tfds registers), saying whose they are when they belong to another known
  dataset: tfds itself prepares whatever files carry the expected names."""
  official = official_checksums(info)
  wrong = {name: _sha256(os.path.join(manual_dir, name))
           for name in info.manual_files if name in official}
  wrong = {name: digest for name, digest in wrong.items() if digest != official[name]}
  if not wrong:
    return
  owners = {_checksum_owners().get(digest) for digest in wrong.values()}
  files = ", ".join(sorted(wrong))
  if len(owners) == 1 and None not in owners:
    owner = owners.pop()
    raise DataUnavailableError(
        f"--manual_dir {manual_dir!r}: {files} are {owner}'s official files, not "
        f"{info.name}'s; pass the folder of {info.name}'s files (or use "
        f"--dataset={owner}).")
  raise DataUnavailableError(
      f"--manual_dir {manual_dir!r}: {files} are not the official {info.name} files "
      f"(their SHA-256 matches no dataset this package knows: a partial download or "
      f"other data?). " + _manual_dir_hint(info))


def _manual_dir_hint(info: DatasetInfo) -> str:
  if not info.manual_files:
    return (f"Prepare {info.tfds_name} on a machine with internet into a --data_dir "
            f"and pass that folder here, or pass --manual_dir with the files tfds "
            f"documents for it.")
  files = ", ".join(info.manual_files)
  return (
      f"Download the official files on a machine with internet and pass their folder "
      f"with --manual_dir (make_dataset(..., manual_dir=...)); for {info.name} tfds "
      f"expects these file names in it: {files}. The dataset is then prepared once "
      f"into --data_dir and reused from there.")


def check_prepare_prerequisites(info: DatasetInfo) -> None:
  """Fails before any download if tfds could not prepare `info` here.

  tfds prepares LSUN from LMDB files through `tensorflow-io` (not a dependency of this
  package: its releases lag TensorFlow's); without it a download of tens of GB would
  be wasted. Tests that mock tfds replace this function.
  """
  for module in info.prepare_requires:
    try:
      importlib.import_module(module)
    except Exception as e:  # ImportError, or a binary built for another TF
      raise DataUnavailableError(
          f"Preparing {info.name} with tfds needs the `{module}` module "
          f"(pip: {module.replace('_', '-')}), which cannot be imported here ({e}). "
          f"Prepare it on a machine where it matches TensorFlow and pass that "
          f"--data_dir.") from e


def prepare_dataset(name, data_dir: str | None = None,
                    manual_dir: str | None = None):
  """Makes sure `name` is prepared in `data_dir` and returns its tfds builder.

  Order: data already prepared in `data_dir` -> reuse it; `manual_dir` given -> check
  that the expected files are there and prepare from them with no network; otherwise
  check that the download host answers (a few seconds) and let tfds download. Returns
  `None` for sets without tfds (digits), which need nothing.

  Raises:
    ValueError: unknown `name`.
    DataUnavailableError: files missing from `manual_dir`, or no network and no
      prepared data.
  """
  info = name if isinstance(name, DatasetInfo) else get_dataset_info(name)
  if info.tfds_name is None:
    return None
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(info.tfds_name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  if manual_dir is not None:
    manual_dir = os.path.expanduser(os.fspath(manual_dir))
    missing = [f for f in info.manual_files
               if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
      raise DataUnavailableError(
          f"--manual_dir {manual_dir!r} lacks the files tfds needs to prepare "
          f"{info.name}: missing {', '.join(missing)} (expected all of: "
          f"{', '.join(info.manual_files)}).")
    verify_manual_files(info, manual_dir)
    check_prepare_prerequisites(info)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder.download_and_prepare(download_dir=_download_dir(builder, info),
                                 download_config=config)
    return builder
  urls = download_urls(info) or [_FALLBACK_HOST]
  if not network_available(urls[0]):
    host = urllib.parse.urlsplit(urls[0]).hostname
    raise DataUnavailableError(
        f"Dataset {info.name!r} is not prepared in data_dir "
        f"{builder.data_dir_root!s} and {host} cannot be reached (no network?). "
        + _manual_dir_hint(info))
  check_prepare_prerequisites(info)
  builder.download_and_prepare(download_dir=_download_dir(builder, info))
  return builder


def _download_dir(builder, info: DatasetInfo) -> str:
  """A download folder per dataset. tfds extracts manual files by their base name
  into `downloads/extracted/`, and MNIST and Fashion-MNIST use the same names: in one
  shared folder, the second dataset prepared would get the first one's images."""
  return os.path.join(builder.data_dir_root, "downloads", info.name)


def read_images(info: DatasetInfo, split: str, shuffle_files: bool, data_dir,
                manual_dir, seed: int, labels: bool = False) -> tf.data.Dataset:
  """Decoded uint8 images (unbatched) of a tfds dataset's split; with `labels`,
  `(image, int32 label)` pairs (labels are dropped otherwise)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = prepare_dataset(info, data_dir=data_dir, manual_dir=manual_dir)
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

  builder = prepare_dataset(info, data_dir=data_dir, manual_dir=manual_dir)
  key = info.label_key
  ds = builder.as_dataset(split=split, read_config=tfds.ReadConfig(try_autocache=False),
                          decoders=tfds.decode.PartialDecoding({key: True}))
  ds = ds.map(lambda example: tf.cast(example[key], tf.int32)).batch(65_536)
  return np.concatenate(list(ds.as_numpy_iterator()) + [np.zeros([0], np.int32)])


def _class_label(features) -> str | None:
  """The key of the class label feature: "label" when it is a ClassLabel, else the
  only ClassLabel feature; None when there is no such feature (or several)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  keys = [key for key, feature in features.items()
          if isinstance(feature, tfds.features.ClassLabel)]
  if "label" in keys:
    return "label"
  return keys[0] if len(keys) == 1 else None


def _label_fields(features) -> dict:
  """`DatasetInfo` fields of the builder's class labels (none without labels)."""
  key = _class_label(features)
  if key is None:
    return {}
  feature = features[key]
  return {"num_classes": int(feature.num_classes),
          "class_names": tuple(feature.names), "label_key": key}


def describe(spec: str, data_dir=None, manual_dir=None, image_size=None) -> DatasetInfo:
  """The `DatasetInfo` of `--dataset=tfds:NAME[/CONFIG]`, preparing it if needed.

  The image feature, its shape and the splits come from the builder: train is
  "train"; test is "test" (or "validation" when there is no test split); validation
  is "validation" when the set has both, else the last images of train (at most
  TFDS_HELD_OUT, at most a tenth). `image_size` (H, W) resizes to cover and
  centre-crops, as for image folders; images of varying size need it. Class labels:
  the ClassLabel feature "label", else the only ClassLabel feature (none otherwise).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = spec[len(TFDS_PREFIX):]
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  (tfds's not-found errors vary)
    raise ValueError(f"--dataset={spec}: tensorflow-datasets has no such dataset "
                     f"({str(e).splitlines()[0][:200]}).") from None
  images = [key for key, feature in builder.info.features.items()
            if isinstance(feature, tfds.features.Image)]
  if not images:
    raise ValueError(f"--dataset={spec} has no image feature; its features are "
                     f"{', '.join(builder.info.features)}.")
  feature = builder.info.features[images[0]]
  height, width, channels = feature.shape
  preprocess = ()
  if image_size is not None:
    height, width = image_size
    preprocess = (transforms.Fit((height, width)),)
  elif height is None or width is None:
    raise ValueError(f"--dataset={spec} has images of varying size; pass "
                     f"--image_size=HxW.")
  info = DatasetInfo(spec, (height, width, channels), 256, 0, 0, "train", "test",
                     name, image_key=images[0], preprocess=preprocess)
  builder = prepare_dataset(info, data_dir=data_dir, manual_dir=manual_dir)
  counts = {split: info.num_examples for split, info in builder.info.splits.items()}
  if "train" not in counts:
    raise ValueError(f"--dataset={spec} has no 'train' split (it has "
                     f"{', '.join(counts)}).")
  test = "test" if "test" in counts else "validation" if "validation" in counts else None
  if test is not None and "validation" in counts and test != "validation":
    validation, train, num_train = "validation", "train", counts["train"]
    num_validation = counts["validation"]
  else:
    num_validation = min(TFDS_HELD_OUT, counts["train"] // 10)
    num_train = counts["train"] - num_validation
    train, validation = f"train[:{num_train}]", f"train[{num_train}:]"
  if test is None:  # no test split either: hold it out of train too
    num_test = num_validation
    num_train -= num_test
    train = f"train[:{num_train}]"
    validation = f"train[{num_train}:{num_train + num_validation}]"
    test = f"train[{num_train + num_validation}:]"
  else:
    num_test = counts[test]
  # Labels from the prepared builder: some sets name their classes only then.
  return dataclasses.replace(
      info, num_train=num_train, train_split=train, validation_split=validation,
      num_validation=num_validation, test_split=test, num_test=num_test,
      **_label_fields(builder.info.features))
