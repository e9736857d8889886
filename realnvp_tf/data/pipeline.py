"""tf.data pipelines: dequantized images in [0, K) for the flow.

Every dataset is served as a `tf.data.Dataset` of float32 `[B, H, W, C]` batches of
`x + u`, where `x` holds the integer pixels 0..K-1 and `u ~ U[0, 1)`. Class labels are
served on request (`labels=True`, for a class-conditional model): `(images, labels)`
batches with int32 `[B]` labels, the images exactly those of the unlabelled pipeline
with the same seed; otherwise labels are not read. What a dataset needs (its source,
deterministic preprocessing, crop, flips, labels) is read from its registry entry.

Training pipelines shuffle, apply the entry's random crops and horizontal flips, draw
fresh noise every epoch, drop the last partial batch and repeat forever. Evaluation
pipelines keep every image in order, never flip, crop centrally, and draw the noise of
image `i` from a stateless generator seeded by `(seed, i)`: a test NLL is reproducible
to the last digit, whatever the batch size or the number of input pipelines.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from realnvp_tf.data import dequantization
from realnvp_tf.data import transforms
from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info
from realnvp_tf.data.registry import require_labels

AUTOTUNE = tf.data.AUTOTUNE

# Shuffle buffer for the datasets that are not held in memory.
_STREAM_SHUFFLE_BUFFER = 10_000
# Each input pipeline (one per host) shuffles with `seed + stride * pipeline_id`: a
# prime, so that hosts' shuffle orders differ for every run seed.
_PIPELINE_SEED_STRIDE = 7919
# Seed streams, so noise, flips and crops never share random numbers (evaluation
# noise: `dequantization.image_noise`'s streams).
_TRAIN_NOISE, _TRAIN_FLIP, _TRAIN_CROP = 1, 2, 3


def _info(name) -> DatasetInfo:
  return name if isinstance(name, DatasetInfo) else get_dataset_info(name)


def _on_image(fn, labels):
  """`fn` of an image; with `labels`, the same on `(image, label)`, label kept."""
  if not labels:
    return fn
  return lambda image, label: (fn(image), label)


def _on_indexed_image(fn, labels):
  """`fn(index, image)`; with `labels`, the same on `(index, (image, label))`, label
  kept (the elements of `enumerate` over pairs)."""
  if not labels:
    return fn
  return lambda index, pair: (fn(index, pair[0]), pair[1])


def _source(info: DatasetInfo, split: str, training: bool, seed: int,
            labels: bool = False) -> tf.data.Dataset:
  """uint8 images after the entry's deterministic preprocessing (before any crop);
  `(image, int32 label)` pairs with `labels`."""
  if labels:
    require_labels(info)
  ds = info.source.images(split, training, seed, labels=labels)
  for step in info.preprocess:
    ds = ds.map(_on_image(step, labels), num_parallel_calls=AUTOTUNE)
  return ds


def _check_args(split: str, batch_size: int) -> None:
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be 'train', 'test' or a tfds split, not {split!r}")
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")


def _center_crop(info: DatasetInfo):
  height, width = info.crop
  return lambda image: transforms.center_crop(image, height, width)


def make_uint8_dataset(name, split: str = "train",
                       labels: bool = False) -> tf.data.Dataset:
  """The integer pixels of a split, unbatched uint8 `[H, W, C]`, in file order;
  `(image, int32 label)` pairs with `labels`.

  This is the evaluation view before noise (preprocessed and centrally cropped as the
  entry says). Useful for statistics on the raw pixels.
  """
  info = _info(name)
  _check_args(split, 1)
  ds = _source(info, split, False, 0, labels)
  if info.crop:
    ds = ds.map(_on_image(_center_crop(info), labels), num_parallel_calls=AUTOTUNE)
  return ds


def _evaluation_pipeline(ds, info, batch_size, seed, num_pipelines, pipeline_id,
                         repeat, labels):
  ds = ds.enumerate()  # global image index, before sharding
  if num_pipelines > 1:
    ds = ds.shard(num_pipelines, pipeline_id)
  if info.in_memory:
    ds = ds.cache()
  crop = _center_crop(info) if info.crop else (lambda image: image)

  def evaluate(index, image):
    image = tf.cast(crop(image), tf.float32)
    return dequantization.add_noise(
        image, dequantization.image_noise(tf.shape(image), seed, index))

  ds = ds.map(_on_indexed_image(evaluate, labels), num_parallel_calls=AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=False)
  if repeat != 1:
    ds = ds.repeat(repeat)
  return ds.prefetch(AUTOTUNE)


def _training_pipeline(ds, info, batch_size, seed, num_pipelines, pipeline_id, repeat,
                       labels):
  if num_pipelines > 1:
    ds = ds.shard(num_pipelines, pipeline_id)
  if info.in_memory:
    ds = ds.cache()
    buffer = info.num_train
  else:
    buffer = _STREAM_SHUFFLE_BUFFER
  ds = ds.shuffle(buffer, seed=seed + _PIPELINE_SEED_STRIDE * pipeline_id,
                  reshuffle_each_iteration=True)
  ds = ds.repeat(repeat)
  if info.crop:  # random crops, one seed per image drawn
    crop_shape = tuple(info.crop) + (info.image_shape[-1],)

    def crop(index, image):
      image_seed = transforms.element_seed(seed, _TRAIN_CROP, pipeline_id, index)
      return tf.image.stateless_random_crop(image, crop_shape, seed=image_seed)

    ds = ds.enumerate().map(_on_indexed_image(crop, labels),
                            num_parallel_calls=AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True)
  flips = info.random_flips

  def augment(step, images):  # vectorised over the batch: cheap per image
    if flips:
      images = transforms.random_flip_batch(
          images, transforms.element_seed(seed, _TRAIN_FLIP, pipeline_id, step))
    return dequantization.dequantize(
        images, transforms.element_seed(seed, _TRAIN_NOISE, pipeline_id, step))

  ds = ds.enumerate().map(_on_indexed_image(augment, labels),
                          num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def make_dataset(name, split: str = "train", batch_size: int = 64,
                 training: bool = True, seed: int = 0,
                 input_context: tf.distribute.InputContext | None = None,
                 repeat: int | None = None, labels: bool = False) -> tf.data.Dataset:
  """A `tf.data.Dataset` of float32 `[B, H, W, C]` images in `[0, K)` (with
  `labels`, of `(images, int32 [B] labels)` pairs).

  Args:
    name: one of `DATASET_NAMES`, or a `DatasetInfo` (e.g. of `resolve`: an image
      folder, a `tfds:` set; `get_dataset_info(name, data_dir, manual_dir)` for a
      registered set whose files are elsewhere than tfds's default).
    split: "train", "validation" or "test" (the entry's splits), or any other tfds
      split string, passed through as it is.
    batch_size: the global batch size; with `input_context` each pipeline batches
      `input_context.get_per_replica_batch_size(batch_size)` images.
    training: training pipeline (shuffle, random crops and flips where the entry has
      them, fresh noise every epoch, `drop_remainder`, repeats forever by default) or
      evaluation pipeline (file order, no flips, central crops, every image kept, noise
      of image `i` seeded by `(seed, i)`, one pass by default).
    seed: seed of every random choice (shuffle order, noise, flips, crops).
    input_context: a `tf.distribute.InputContext`: shard by input pipeline and batch
      per replica (for `strategy.distribute_datasets_from_function`).
    repeat: number of passes; `None` means forever when training and once when
      evaluating.
    labels: serve each batch's class labels too (0..num_classes-1), following their
      images through shuffles, crops and flips; the images are the same as without.

  Raises:
    ValueError: unknown name, bad split or batch size, labels asked of a set without.
    DataUnavailableError: the data is not prepared and cannot be obtained.
  """
  info = _info(name)
  _check_args(split, batch_size)
  num_pipelines, pipeline_id = 1, 0
  if input_context is not None:
    num_pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
    batch_size = input_context.get_per_replica_batch_size(batch_size)
  if repeat is None:
    repeat = -1 if training else 1
  # Sharded by element so every pipeline reads a disjoint part with the same file
  # order; tfds file shuffling uses the same seed in every pipeline.
  ds = _source(info, split, training, seed, labels)
  build = _training_pipeline if training else _evaluation_pipeline
  return build(ds, info, batch_size, seed, num_pipelines, pipeline_id, repeat, labels)


def make_distributed_dataset(strategy: tf.distribute.Strategy, name: str,
                             split: str = "train", global_batch_size: int = 64,
                             training: bool = True, labels: bool = False, **kwargs):
  """`make_dataset` per input pipeline through
  `strategy.distribute_datasets_from_function`; each replica gets
  `global_batch_size / num_replicas` images per step (with their labels when
  `labels`). `kwargs` are `make_dataset`'s (`seed`, `repeat`).

  The data is prepared once here, before the per-pipeline functions run.
  """
  if "input_context" in kwargs or "batch_size" in kwargs:
    raise TypeError("make_distributed_dataset sets batch_size and input_context")
  info = _info(name)
  if labels:
    require_labels(info)
  info.source.prepare()

  def dataset_fn(input_context):
    return make_dataset(info, split, batch_size=global_batch_size, training=training,
                        input_context=input_context, labels=labels, **kwargs)

  return strategy.distribute_datasets_from_function(dataset_fn)


def label_counts(name, split: str = "train") -> np.ndarray:
  """How many images of each class a split has: int64 `[num_classes]`.

  A generative classifier's prior p(y) is estimated from the training split's
  counts. Only the labels are read (arrays, a folder's stored labels, or tfds's
  label feature alone): no image is decoded.

  Raises:
    ValueError: the set has no class labels, or a label is outside its classes.
  """
  info = _info(name)
  require_labels(info)
  _check_args(split, 1)
  labels = np.asarray(info.source.split_labels(split), np.int64)
  if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
    raise ValueError(f"{info.name}/{split} has labels outside 0..{info.num_classes - 1}"
                     f" (from {labels.min()} to {labels.max()}); fix its labels or "
                     f"num_classes.")
  return np.bincount(labels, minlength=info.num_classes).astype(np.int64)


def prepare_dataset(name, data_dir: str | None = None,
                    manual_dir: str | None = None):
  """Makes the images of `name` (a registered name or a `DatasetInfo`) readable:
  prepares a tfds set in `data_dir` (from the official files in `manual_dir`, or
  downloaded) and returns its tfds builder; returns None for sets that need nothing
  (digits, folders, tf.data datasets).

  Raises:
    ValueError: unknown `name`.
    DataUnavailableError: files missing from `manual_dir`, or no network and no
      prepared data.
  """
  return _info(name).located(data_dir, manual_dir).source.prepare()
