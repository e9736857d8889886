"""Images held as numpy arrays, one per split (the embedded digits set)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from realnvp_tf.data.dataset_info import DataSource
from realnvp_tf.data.dataset_info import check_split


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource(DataSource):
  """`load_images(split)`: uint8 `[N, H, W, C]`; `load_labels(split)`: int `[N]` in
  the same order (None for a set without labels). Loaded when read, not before."""

  name: str
  load_images: Callable[[str], np.ndarray]
  load_labels: Optional[Callable[[str], np.ndarray]] = None

  def split_labels(self, split):
    check_split(self.name, split)
    if self.load_labels is None:
      raise ValueError(f"{self.name} has no class labels.")
    return np.asarray(self.load_labels(split), np.int32)

  def images(self, split, shuffle=False, seed=0, labels=False):
    del shuffle, seed  # the pipelines shuffle
    check_split(self.name, split)
    if labels:
      return tf.data.Dataset.from_tensor_slices(
          (self.load_images(split), self.split_labels(split)))
    return tf.data.Dataset.from_tensor_slices(self.load_images(split))
