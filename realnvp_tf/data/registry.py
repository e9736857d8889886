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
    num_test: images in the evaluation split.
    train_split: tfds split string used for `split="train"`.
    test_split: tfds split string used for `split="test"`.
    tfds_name: tfds builder name (`None` for a set held in memory, see `load_arrays`).
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

  @property
  def num_dims(self) -> int:
    """D = H * W * C, the number of dimensions of one image."""
    height, width, channels = self.image_shape
    return height * width * channels

  def split_name(self, split: str) -> str:
    """The tfds split string of `"train"` or `"test"`; other strings pass through."""
    return {"train": self.train_split, "test": self.test_split}.get(split, split)


_DIGITS_TRAIN = 1_500
# A fixed permutation (legacy RandomState stream, stable across numpy versions).
_DIGITS_SPLIT_SEED = 0


def _digits_arrays(split: str) -> np.ndarray:
  """scikit-learn's bundled 8x8 digits as uint8 [N, 8, 8, 1], values 0..16."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top  (slow import)

  images = load_digits().images.astype(np.uint8)[..., None]  # 1797 x 8 x 8 x 1
  order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(images))
  if split == "train":
    return images[order[:_DIGITS_TRAIN]]
  if split == "test":
    return images[order[_DIGITS_TRAIN:]]
  raise ValueError(f"digits has the splits 'train' and 'test', not {split!r}")


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# The paper's 64x64 sets.
_CELEBA = (transforms.CentralCrop(148), transforms.Resize((64, 64)))
_LSUN = (transforms.ResizeSmallestSide(96),)

_INFOS = {
    info.name: info for info in (
        DatasetInfo("mnist", (28, 28, 1), 256, 60_000, 10_000, "train", "test",
                    "mnist", in_memory=True, manual_files=_IDX_FILES),
        DatasetInfo("fashion_mnist", (28, 28, 1), 256, 60_000, 10_000, "train",
                    "test", "fashion_mnist", in_memory=True, manual_files=_IDX_FILES),
        DatasetInfo("cifar10", (32, 32, 3), 256, 50_000, 10_000, "train", "test",
                    "cifar10", random_flips=True, in_memory=True,
                    manual_files=("cifar-10-binary.tar.gz",)),
        DatasetInfo("celeb_a", (64, 64, 3), 256, 162_770, 19_962, "train", "test",
                    "celeb_a", random_flips=True, preprocess=_CELEBA,
                    manual_files=("img_align_celeba.zip", "list_eval_partition.txt",
                                  "list_attr_celeba.txt",
                                  "list_landmarks_align_celeba.txt",
                                  "identity_CelebA.txt")),
        DatasetInfo("imagenet32", (32, 32, 3), 256, 1_281_167, 50_000, "train",
                    "validation", "imagenet_resized/32x32",
                    manual_files=("Imagenet32_train_npz.zip",
                                  "Imagenet32_val_npz.zip")),
        DatasetInfo("imagenet64", (64, 64, 3), 256, 1_281_167, 50_000, "train",
                    "validation", "imagenet_resized/64x64",
                    manual_files=("Imagenet64_train_part1_npz.zip",
                                  "Imagenet64_train_part2_npz.zip",
                                  "Imagenet64_val_npz.zip")),
        # tfds reads LSUN's LMDB files through tensorflow-io.
        DatasetInfo("lsun_bedroom", (64, 64, 3), 256, 3_033_042, 300, "train",
                    "validation", "lsun/bedroom", random_flips=True,
                    preprocess=_LSUN, crop=(64, 64),
                    prepare_requires=("tensorflow_io",),
                    manual_files=("bedroom_train_lmdb.zip", "bedroom_val_lmdb.zip")),
        DatasetInfo("digits", (8, 8, 1), 17, _DIGITS_TRAIN, 1797 - _DIGITS_TRAIN,
                    "train", "test", None, in_memory=True, load_arrays=_digits_arrays),
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
