"""The embedded digits read straight from the package's file with numpy, and split as
the package documents it (a RandomState(0) permutation: 1,300 train, 200 validation,
297 test): the tests' reference for what the data pipelines give."""

import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(REPO, "realnvp_tf", "data", "digits.npz")
SPLITS = {"train": (0, 1300), "validation": (1300, 1500), "test": (1500, 1797)}
# The UCI set's published class counts (its test set, which scikit-learn bundles).
CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def everything():
  """(images uint8 [1797, 8, 8, 1], labels [1797]) in the file's order."""
  with np.load(PATH) as stored:
    return stored["images"][..., None], stored["labels"].astype(np.int64)


def split(name):
  """(images, labels) of split `name`, in the split's order."""
  images, labels = everything()
  start, end = SPLITS[name]
  rows = np.random.RandomState(0).permutation(len(labels))[start:end]
  return images[rows], labels[rows]
