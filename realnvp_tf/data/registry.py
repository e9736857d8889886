"""The datasets this package knows, each one entry with its shape, splits and steps.

Adding a dataset is adding an entry here: the pipelines read everything they do from it
(no dataset names in their code).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np

from realnvp_tf.data import tfds_fetch
from realnvp_tf.data import transforms
from realnvp_tf.data.array_source import ArraySource
from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.tfds_source import TfdsSource

# Digits: a fixed permutation of the 1,797 images (legacy RandomState stream, stable
# across numpy versions): the first 1,300 train, the next 200 validation, 297 test.
_DIGITS_SPLITS = {"train": (0, 1_300), "validation": (1_300, 1_500),
                  "test": (1_500, 1_797)}
_DIGITS_SPLIT_SEED = 0


@functools.lru_cache(maxsize=None)
def _digits_file() -> dict[str, np.ndarray]:
  """The embedded digits (`digits.npz` beside this module): `images` uint8
  [1797, 8, 8] with values 0..16 and `labels` uint8 [1797], the UCI optical
  recognition of handwritten digits test set as scikit-learn 1.9.1 bundles it
  (`load_digits()`, written with `np.savez_compressed`; docs/data.md)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")
  with np.load(path) as stored:
    return {name: stored[name] for name in stored.files}


def _digits(split: str, field: str) -> np.ndarray:
  """`field` ("images" or "labels") of the embedded digits, `split`'s rows in the
  split's order: images and labels both take their rows from here, so they stay
  paired."""
  if split not in _DIGITS_SPLITS:
    raise ValueError(f"digits has the splits {', '.join(_DIGITS_SPLITS)}, not "
                     f"{split!r}")
  values = _digits_file()[field]
  order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(values))
  start, end = _DIGITS_SPLITS[split]
  return values[order[start:end]]


def _digits_arrays(split: str) -> np.ndarray:
  """The embedded 8x8 digits as uint8 [N, 8, 8, 1], values 0..16."""
  return _digits(split, "images")[..., None]


def _digits_labels(split: str) -> np.ndarray:
  """The digits' classes 0..9 as int32 [N], in `_digits_arrays`' order."""
  return _digits(split, "labels").astype(np.int32)


def _held_out(total, held_out):
  """(train split, validation split, train count) holding out the last `held_out` of
  a tfds "train" split of `total` images."""
  kept = total - held_out
  return f"train[:{kept}]", f"train[{kept}:]", kept


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# The paper's 64x64 sets.
_CELEBA = (transforms.CentralCrop(148), transforms.Resize((64, 64)))
_LSUN = (transforms.ResizeSmallestSide(96),)
_DIGIT_NAMES = tuple(str(digit) for digit in range(10))
_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                  "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                  "horse", "ship", "truck")

# Validation: the set's own validation split where it has one besides its test split
# (CelebA); otherwise the last images of the training split, held out from training:
# 5,000 for MNIST, Fashion-MNIST and CIFAR-10, 10,000 for the ImageNets, 3,000 for LSUN.
_MNIST_TRAIN, _MNIST_VALIDATION, _MNIST_KEPT = _held_out(60_000, 5_000)
_CIFAR_TRAIN, _CIFAR_VALIDATION, _CIFAR_KEPT = _held_out(50_000, 5_000)
_IMAGENET_TRAIN, _IMAGENET_VALIDATION, _IMAGENET_KEPT = _held_out(1_281_167, 10_000)
_LSUN_TRAIN, _LSUN_VALIDATION, _LSUN_KEPT = _held_out(3_033_042, 3_000)

@functools.lru_cache(maxsize=1)
def file_owners() -> dict[str, str]:
  """{SHA-256: dataset name} of the official files of every tfds set here."""
  owners = {}
  for name, info in _INFOS.items():
    if isinstance(info.source, TfdsSource):
      for digest in tfds_fetch.official_checksums(info.source).values():
        owners.setdefault(digest, name)
  return owners


def _tfds(name, tfds_name, splits, manual_files, **kwargs):
  """A `TfdsSource` of this registry (it knows the others' official files)."""
  train, validation, test = splits
  return TfdsSource(name, tfds_name,
                    {"train": train, "validation": validation, "test": test},
                    manual_files=manual_files, file_owners=file_owners, **kwargs)


_MNIST_SPLITS = (_MNIST_TRAIN, _MNIST_VALIDATION, "test")
_IMAGENET_SPLITS = (_IMAGENET_TRAIN, _IMAGENET_VALIDATION, "validation")
_INFOS = {
    info.name: info for info in (
        DatasetInfo(
            name="mnist", image_shape=(28, 28, 1), num_levels=256,
            num_train=_MNIST_KEPT, num_validation=5_000, num_test=10_000,
            source=_tfds("mnist", "mnist", _MNIST_SPLITS, _IDX_FILES),
            in_memory=True, num_classes=10, class_names=_DIGIT_NAMES),
        DatasetInfo(
            name="fashion_mnist", image_shape=(28, 28, 1), num_levels=256,
            num_train=_MNIST_KEPT, num_validation=5_000, num_test=10_000,
            source=_tfds("fashion_mnist", "fashion_mnist", _MNIST_SPLITS, _IDX_FILES),
            in_memory=True, num_classes=10, class_names=_FASHION_NAMES),
        DatasetInfo(
            name="cifar10", image_shape=(32, 32, 3), num_levels=256,
            num_train=_CIFAR_KEPT, num_validation=5_000, num_test=10_000,
            source=_tfds("cifar10", "cifar10",
                         (_CIFAR_TRAIN, _CIFAR_VALIDATION, "test"),
                         ("cifar-10-binary.tar.gz",)),
            random_flips=True, in_memory=True, num_classes=10,
            class_names=_CIFAR10_NAMES),
        DatasetInfo(
            name="celeb_a", image_shape=(64, 64, 3), num_levels=256,
            num_train=162_770, num_validation=19_867, num_test=19_962,
            source=_tfds("celeb_a", "celeb_a", ("train", "validation", "test"),
                         ("img_align_celeba.zip", "list_eval_partition.txt",
                          "list_attr_celeba.txt", "list_landmarks_align_celeba.txt",
                          "identity_CelebA.txt")),
            random_flips=True, preprocess=_CELEBA),
        DatasetInfo(
            name="imagenet32", image_shape=(32, 32, 3), num_levels=256,
            num_train=_IMAGENET_KEPT, num_validation=10_000, num_test=50_000,
            source=_tfds("imagenet32", "imagenet_resized/32x32", _IMAGENET_SPLITS,
                         ("Imagenet32_train_npz.zip", "Imagenet32_val_npz.zip")),
            num_classes=1_000),
        DatasetInfo(
            name="imagenet64", image_shape=(64, 64, 3), num_levels=256,
            num_train=_IMAGENET_KEPT, num_validation=10_000, num_test=50_000,
            source=_tfds("imagenet64", "imagenet_resized/64x64", _IMAGENET_SPLITS,
                         ("Imagenet64_train_part1_npz.zip",
                          "Imagenet64_train_part2_npz.zip", "Imagenet64_val_npz.zip")),
            num_classes=1_000),
        # tfds reads LSUN's LMDB files through tensorflow-io.
        DatasetInfo(
            name="lsun_bedroom", image_shape=(64, 64, 3), num_levels=256,
            num_train=_LSUN_KEPT, num_validation=3_000, num_test=300,
            source=_tfds("lsun_bedroom", "lsun/bedroom",
                         (_LSUN_TRAIN, _LSUN_VALIDATION, "validation"),
                         ("bedroom_train_lmdb.zip", "bedroom_val_lmdb.zip"),
                         prepare_requires=("tensorflow_io",)),
            random_flips=True, preprocess=_LSUN, crop=(64, 64)),
        DatasetInfo(
            name="digits", image_shape=(8, 8, 1), num_levels=17, num_train=1_300,
            num_validation=200, num_test=297,
            source=ArraySource("digits", _digits_arrays, _digits_labels),
            in_memory=True, num_classes=10, class_names=_DIGIT_NAMES),
    )
}

DATASET_NAMES = tuple(_INFOS)


def get_dataset_info(name: str, data_dir: Optional[str] = None,
                     manual_dir: Optional[str] = None) -> DatasetInfo:
  """Returns the `DatasetInfo` of `name`, its files read from `data_dir` (tfds's data
  directory; tfds's default when None) and `manual_dir` (the official raw files, for
  machines without internet); ValueError for unknown names."""
  try:
    info = _INFOS[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"Unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}"
    ) from None
  return info.located(data_dir, manual_dir)


def no_labels_message(info: DatasetInfo) -> str:
  """The one line saying that `info` has no class labels and which sets have them
  (a source may say why in its `no_labels_reason`)."""
  reason = getattr(info.source, "no_labels_reason", "")
  labelled = [name for name in DATASET_NAMES if _INFOS[name].num_classes]
  return (f"{info.name} has no class labels{f' ({reason})' if reason else ''}; a "
          f"class-conditional model needs a labelled dataset ({', '.join(labelled)}, "
          f"a tfds:NAME set with a ClassLabel 'label' feature, or an image folder "
          f"with one subfolder per class).")


def require_labels(info: DatasetInfo, num_classes: Optional[int] = None) -> None:
  """Raises ValueError (`no_labels_message`) unless `info` has class labels (and,
  given `num_classes`, that many classes: a model's): checked before any data is
  read, so a class-conditional run fails at once."""
  if info.num_classes <= 0:
    raise ValueError(no_labels_message(info))
  if num_classes is not None and info.num_classes != num_classes:
    raise ValueError(f"{info.name} has {info.num_classes} classes, but the model is "
                     f"conditioned on num_classes={num_classes}.")


def require_image_format(info: DatasetInfo, image_shape, num_levels: int) -> None:
  """Raises ValueError unless `info`'s images are what a model of `image_shape` and
  `num_levels` (K) takes."""
  if tuple(info.image_shape) != tuple(image_shape) or info.num_levels != num_levels:
    raise ValueError(
        f"{info.name} has images of shape {tuple(info.image_shape)} with "
        f"{info.num_levels} levels; the model is built for {tuple(image_shape)} with "
        f"{num_levels}.")
