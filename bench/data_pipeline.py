"""Input-pipeline throughput beside the training step's, in images/s.

Runs `realnvp_tf.data.make_dataset(..., training=True, batch_size=64)` over
`tfds.testing.mock_data` (random images with the real feature specs, no files, no
network), so the figure covers everything the training pipeline does per image: cache
read, shuffle, batching, flips (CIFAR-10) and dequantization noise. The warm-up (mock
generation, cache fill, first shuffle-buffer fill) is excluded; the figure is the median
over repeats, each longer than one epoch, so the per-epoch shuffle refill is included.

An image folder (`--image_dir`): JPEGs of 256x320 pixels, written by the bench, at
`--image_size=64` with 3 channels, through the same pipeline with the images decoded,
resized (antialiased) and centre-cropped from the files every epoch, as for a folder
too large to hold in memory (a smaller one is decoded once and read from memory);
`image_folder_open_images_per_s` is the one-time check that decodes every file when
the folder is opened.

Beside each, the library's training step (`Trainer.train_step` on random images: the
bench config for MNIST shapes, the paper's CIFAR-10 model for CIFAR-10 shapes, a small
4-scale model for 64x64x3): the pipeline must be far faster than the step it feeds.

Prints one JSON line. Usage:  python bench/data_pipeline.py [--repeats=5] [--steps=200]
"""

import json
import os
import statistics
import tempfile
import time

from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

import benchlib
from realnvp_tf import data
from realnvp_tf.data import image_folder
from realnvp_tf.data import tfds_fetch

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Timings per figure; the median is reported.")
flags.DEFINE_integer("steps", 200, "Batches per pipeline timing.")
flags.DEFINE_integer("train_steps", 3, "Training steps timed (0: skip the step).")
flags.DEFINE_integer("folder_images", 1000, "JPEG files in the image-folder timing.")

BATCH_SIZE = 64
NUM_EXAMPLES = 10_000  # mock examples: about 156 batches per epoch
# Pipeline -> the benchmark config whose training step it is compared with.
PIPELINES = {"mnist": "bench", "cifar10": "cifar10"}


def pipeline_images_per_s(name, repeats, steps):
  """Median images/s of the training pipeline over mock data, and every timing."""
  # Under mock_data tfds's download_and_prepare is a no-op: nothing is fetched.
  tfds_fetch.network_available = lambda url, timeout=0: True
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, max_value=256):
    iterator = iter(data.make_dataset(name, "train", batch_size=BATCH_SIZE,
                                      training=True))
    # Warm-up: cache fill and the first shuffle buffer.
    rates, batch = _time_batches(iterator, NUM_EXAMPLES // BATCH_SIZE + 20, repeats,
                                 steps)
    assert batch.shape == (BATCH_SIZE, *data.get_dataset_info(name).image_shape)
  return statistics.median(rates), rates


def _time_batches(iterator, warmup, repeats, steps):
  """images/s of `repeats` timings of `steps` batches after `warmup` batches, and the
  last batch."""
  for _ in range(warmup):
    next(iterator)
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      batch = next(iterator)
    rates.append(steps * BATCH_SIZE / (time.perf_counter() - start))
  return rates, batch


def write_jpeg_folder(root, num_images, seed=0):
  """`num_images` 256x320 RGB JPEGs (smooth random pictures, quality 90) in `root`."""
  rng = np.random.RandomState(seed)
  for i in range(num_images):
    coarse = rng.randint(0, 256, (8, 10, 3)).astype(np.uint8)
    picture = Image.fromarray(coarse).resize((320, 256), Image.BICUBIC)
    picture.save(os.path.join(root, f"{i:05d}.jpg"), quality=90)


def folder_images_per_s(num_images, repeats, steps):
  """(median images/s of a JPEG folder's training pipeline, every timing, images/s of
  opening the folder)."""
  with tempfile.TemporaryDirectory(prefix="realnvp_bench_jpeg_") as root:
    write_jpeg_folder(root, num_images)
    start = time.perf_counter()
    source = image_folder.open_folder(root, "64", 3, max_in_memory_bytes=0)
    open_rate = num_images / (time.perf_counter() - start)
    info = image_folder.describe(source)
    iterator = iter(data.make_dataset(info, "train", batch_size=BATCH_SIZE,
                                      training=True))
    rates, batch = _time_batches(iterator, info.num_train // BATCH_SIZE + 2, repeats,
                                 steps)  # warm-up: one epoch
    assert batch.shape == (BATCH_SIZE, 64, 64, 3)
  return statistics.median(rates), rates, open_rate


def train_step_images_per_s(config_name, steps):
  """images/s of the library's training step (median of `steps` after a warm-up)."""
  dataset, model_config = benchlib.config(config_name)
  with tempfile.TemporaryDirectory(prefix="realnvp_bench_") as model_dir:
    trainer, iterator = benchlib.random_image_training(model_config, dataset,
                                                       BATCH_SIZE, 0, model_dir)
    float(trainer.step_fn(iterator).bits[0])  # traces
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      float(trainer.step_fn(iterator).bits[0])
      times.append(time.perf_counter() - start)
  return BATCH_SIZE / statistics.median(times)


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  result = {"benchmark": "data_pipeline", "batch_size": BATCH_SIZE,
            "mock_examples": NUM_EXAMPLES, "repeats": FLAGS.repeats,
            "batches_per_repeat": FLAGS.steps, "cpus": os.cpu_count()}
  for name, config_name in PIPELINES.items():
    median, rates = pipeline_images_per_s(name, FLAGS.repeats, FLAGS.steps)
    result[f"{name}_pipeline_images_per_s"] = round(median)
    result[f"{name}_pipeline_images_per_s_all"] = [round(r) for r in rates]
    if FLAGS.train_steps:
      step_rate = train_step_images_per_s(config_name, FLAGS.train_steps)
      result[f"{name}_train_step_images_per_s"] = round(step_rate, 1)
      result[f"{name}_pipeline_over_step"] = round(median / step_rate, 1)
  median, rates, open_rate = folder_images_per_s(FLAGS.folder_images, FLAGS.repeats,
                                                 FLAGS.steps)
  result["image_folder_jpeg_files"] = FLAGS.folder_images
  result["image_folder_open_images_per_s"] = round(open_rate)
  result["image_folder_pipeline_images_per_s"] = round(median)
  result["image_folder_pipeline_images_per_s_all"] = [round(r) for r in rates]
  if FLAGS.train_steps:
    step_rate = train_step_images_per_s("image64", FLAGS.train_steps)
    result["image_folder_train_step_images_per_s"] = round(step_rate, 1)
    result["image_folder_pipeline_over_step"] = round(median / step_rate, 1)
  print(json.dumps(result))


if __name__ == "__main__":
  benchlib.run(main)
