"""The datasets this package knows, each one entry with its shape, splits and steps.

Adding a dataset is adding an entry here: the pipelines read everything they do from it
(no dataset names in their code).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from realnvp_tf.data import transforms


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static description of a dataset as the flow sees it.

  Attributes:
    name: the name used by this package (one of `DATASET_NAMES`).
    image_shape: `(H, W, C)` of the images fed to the flow (after preprocessing).
    num_levels: K, the number of pixel values (pixels are integers 0..K-1).
    num_train: images in the training split.
    num_test: images in the test split.
    train_split: tfds split string used for `split="train"`.
    test_split: tfds split string used for `split="test"`.
    tfds_name: tfds builder name (`None` for sets with a `source` or `load_arrays`).
    random_flips: training applies random horizontal flips (the paper's augmentation).
    in_memory: the decoded images are cached in memory.
    manual_files: file names tfds expects in `manual_dir` (empty without tfds).
    preprocess: deterministic steps applied to every decoded image, in order (e.g.
      `transforms.CentralCrop(148)`, then `transforms.Resize((64, 64))`).
    crop: `(height, width)` of a crop taken after `preprocess`: random in training,
      central in evaluation; `None` for no crop.
    prepare_requires: modules tfds needs to prepare the dataset (checked before any
      download).
    load_arrays: for sets without tfds: `split -> uint8 [N, H, W, C]` array.
    validation_split: tfds split string (or `load_arrays` key) of the validation
      images, held out from training; sets without a validation split of their own
      hold out the end of the training split (see `DATASET_NAMES`' entries).
    num_validation: images in the validation split.
    image_key: the image feature of a tfds set.
    source: for sets that are neither tfds sets nor arrays (image folders, a user's
      tf.data datasets): an object whose `images(split, shuffle, seed)` gives uint8
      `[H, W, C]` images; a labelled source also takes `labels=True` (then
      `(image, int32 label)` pairs) and has `split_labels(split)` (an array of the
      split's labels, for `label_counts`).
    num_classes: classes of the labels (0: the set has no class labels).
    class_names: the classes' names in label order (may be empty).
    label_key: the class label feature of a tfds set.
    load_labels: for array sets with labels: `split -> int [N]` array, in the order
      of `load_arrays`' images.
  """

  name: str
  image_shape: tuple[int, int, int]
  num_levels: int
  num_train: int
  num_test: int
  train_split: str
  test_split: str
  tfds_name: Optional[str]
  random_flips: bool = False
  in_memory: bool = False
  manual_files: tuple[str, ...] = ()
  preprocess: tuple = ()
  crop: Optional[tuple[int, int]] = None
  prepare_requires: tuple[str, ...] = ()
  load_arrays: Optional[Callable[[str], np.ndarray]] = None
  validation_split: Optional[str] = None
  num_validation: int = 0
  image_key: str = "image"
  source: Optional[object] = None
  num_classes: int = 0
  class_names: tuple = ()
  label_key: str = "label"
  load_labels: Optional[Callable[[str], np.ndarray]] = None

  @property
  def num_dims(self) -> int:
    """D = H * W * C, the number of dimensions of one image."""
    height, width, channels = self.image_shape
    return height * width * channels

  def split_name(self, split: str) -> str:
    """The tfds split string of "train", "validation" or "test"; other strings pass
    through."""
    if split == "validation" and self.validation_split is None:
      raise ValueError(f"{self.name} has no validation split.")
    return {"train": self.train_split, "validation": self.validation_split,
            "test": self.test_split}.get(split, split)

  def num_images(self, split: str) -> int:
    return {"train": self.num_train, "validation": self.num_validation,
            "test": self.num_test}[split]


# Digits: a fixed permutation of the 1,797 images (legacy RandomState stream, stable
# across numpy versions): the first 1,300 train, the next 200 validation, 297 test.
_DIGITS_SPLITS = {"train": (0, 1_300), "validation": (1_300, 1_500),
                  "test": (1_500, 1_797)}
_DIGITS_SPLIT_SEED = 0


def _digits(split: str, field: str) -> np.ndarray:
  """`field` ("images" or "target") of scikit-learn's bundled digits, `split`'s rows
  in the split's order: images and labels both take their rows from here, so they
  stay paired."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top  (slow import)

  if split not in _DIGITS_SPLITS:
    raise ValueError(f"digits has the splits {', '.join(_DIGITS_SPLITS)}, not "
                     f"{split!r}")
  values = getattr(load_digits(), field)
  order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(values))
  start, end = _DIGITS_SPLITS[split]
  return values[order[start:end]]


def _digits_arrays(split: str) -> np.ndarray:
  """scikit-learn's bundled 8x8 digits as uint8 [N, 8, 8, 1], values 0..16."""
  return _digits(split, "images").astype(np.uint8)[..., None]


def _digits_labels(split: str) -> np.ndarray:
  """The digits' classes 0..9 as int32 [N], in `_digits_arrays`' order."""
  return _digits(split, "target").astype(np.int32)


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

_INFOS = {
    info.name: info for info in (
        DatasetInfo("mnist", (28, 28, 1), 256, _MNIST_KEPT, 10_000, _MNIST_TRAIN,
                    "test", "mnist", in_memory=True, manual_files=_IDX_FILES,
                    validation_split=_MNIST_VALIDATION, num_validation=5_000,
                    num_classes=10, class_names=_DIGIT_NAMES),
        DatasetInfo("fashion_mnist", (28, 28, 1), 256, _MNIST_KEPT, 10_000,
                    _MNIST_TRAIN, "test", "fashion_mnist", in_memory=True,
                    manual_files=_IDX_FILES, validation_split=_MNIST_VALIDATION,
                    num_validation=5_000, num_classes=10,
                    class_names=_FASHION_NAMES),
        DatasetInfo("cifar10", (32, 32, 3), 256, _CIFAR_KEPT, 10_000, _CIFAR_TRAIN,
                    "test", "cifar10", random_flips=True, in_memory=True,
                    manual_files=("cifar-10-binary.tar.gz",),
                    validation_split=_CIFAR_VALIDATION, num_validation=5_000,
                    num_classes=10, class_names=_CIFAR10_NAMES),
        DatasetInfo("celeb_a", (64, 64, 3), 256, 162_770, 19_962, "train", "test",
                    "celeb_a", random_flips=True, preprocess=_CELEBA,
                    manual_files=("img_align_celeba.zip", "list_eval_partition.txt",
                                  "list_attr_celeba.txt",
                                  "list_landmarks_align_celeba.txt",
                                  "identity_CelebA.txt"),
                    validation_split="validation", num_validation=19_867),
        DatasetInfo("imagenet32", (32, 32, 3), 256, _IMAGENET_KEPT, 50_000,
                    _IMAGENET_TRAIN, "validation", "imagenet_resized/32x32",
                    manual_files=("Imagenet32_train_npz.zip",
                                  "Imagenet32_val_npz.zip"),
                    validation_split=_IMAGENET_VALIDATION, num_validation=10_000,
                    num_classes=1_000),
        DatasetInfo("imagenet64", (64, 64, 3), 256, _IMAGENET_KEPT, 50_000,
                    _IMAGENET_TRAIN, "validation", "imagenet_resized/64x64",
                    manual_files=("Imagenet64_train_part1_npz.zip",
                                  "Imagenet64_train_part2_npz.zip",
                                  "Imagenet64_val_npz.zip"),
                    validation_split=_IMAGENET_VALIDATION, num_validation=10_000,
                    num_classes=1_000),
        # tfds reads LSUN's LMDB files through tensorflow-io.
        DatasetInfo("lsun_bedroom", (64, 64, 3), 256, _LSUN_KEPT, 300, _LSUN_TRAIN,
                    "validation", "lsun/bedroom", random_flips=True,
                    preprocess=_LSUN, crop=(64, 64),
                    prepare_requires=("tensorflow_io",),
                    manual_files=("bedroom_train_lmdb.zip", "bedroom_val_lmdb.zip"),
                    validation_split=_LSUN_VALIDATION, num_validation=3_000),
        DatasetInfo("digits", (8, 8, 1), 17, 1_300, 297, "train", "test", None,
                    in_memory=True, load_arrays=_digits_arrays,
                    validation_split="validation", num_validation=200,
                    num_classes=10, class_names=_DIGIT_NAMES,
                    load_labels=_digits_labels),
    )
}

DATASET_NAMES = tuple(_INFOS)


def get_dataset_info(name: str) -> DatasetInfo:
  """Returns the `DatasetInfo` of `name`; ValueError for unknown names."""
  try:
    return _INFOS[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"Unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}"
    ) from None


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


# Labels are scalars: large batches keep the host round trips of reading a split's
# labels few (ImageNet's 1.28 million in 20).
LABEL_BATCH = 65_536


def collect_labels(labels) -> np.ndarray:
  """The int32 labels of a `tf.data.Dataset` of scalar labels as one numpy array (an
  empty one for an empty dataset), read in batches of `LABEL_BATCH`."""
  return np.concatenate(list(labels.batch(LABEL_BATCH).as_numpy_iterator()) +
                        [np.zeros([0], np.int32)])


def require_image_format(info: DatasetInfo, image_shape, num_levels: int) -> None:
  """Raises ValueError unless `info`'s images are what a model of `image_shape` and
  `num_levels` (K) takes."""
  if tuple(info.image_shape) != tuple(image_shape) or info.num_levels != num_levels:
    raise ValueError(
        f"{info.name} has images of shape {tuple(info.image_shape)} with "
        f"{info.num_levels} levels; the model is built for {tuple(image_shape)} with "
        f"{num_levels}.")
