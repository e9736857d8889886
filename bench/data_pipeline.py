"""Input-pipeline throughput beside the training step's, in images/s.

Runs `realnvp_tf.data.make_dataset(..., training=True, batch_size=64)` over
`tfds.testing.mock_data` (random images with the real feature specs, no files, no
network), so the figure covers everything the training pipeline does per image: cache
read, shuffle, batching, flips (CIFAR-10) and dequantization noise. The warm-up (mock
generation, cache fill, first shuffle-buffer fill) is excluded; the figure is the median
over repeats, each longer than one epoch, so the per-epoch shuffle refill is included.

Beside it, the library's training step (`Trainer.train_step` on random images, the
bench config for MNIST shapes and the paper's CIFAR-10 model for CIFAR-10 shapes): the
pipeline must be far faster than the step it feeds.

Prints one JSON line. Usage:  python bench/data_pipeline.py [--repeats=5] [--steps=200]
"""

import json
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import tensorflow as tf
import tensorflow_datasets as tfds

import benchlib
from realnvp_tf import data
from realnvp_tf.data import tfds_prep

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Timings per figure; the median is reported.")
flags.DEFINE_integer("steps", 200, "Batches per pipeline timing.")
flags.DEFINE_integer("train_steps", 3, "Training steps timed (0: skip the step).")

BATCH_SIZE = 64
NUM_EXAMPLES = 10_000  # mock examples: about 156 batches per epoch
# Pipeline -> the benchmark config whose training step it is compared with.
PIPELINES = {"mnist": "bench", "cifar10": "cifar10"}


def pipeline_images_per_s(name, repeats, steps):
  """Median images/s of the training pipeline over mock data, and every timing."""
  # Under mock_data tfds's download_and_prepare is a no-op: nothing is fetched.
  tfds_prep.network_available = lambda url, timeout=0: True
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, max_value=256):
    iterator = iter(data.make_dataset(name, "train", batch_size=BATCH_SIZE,
                                      training=True))
    for _ in range(NUM_EXAMPLES // BATCH_SIZE + 20):  # warm-up: cache + shuffle
      next(iterator)
    rates = []
    for _ in range(repeats):
      start = time.perf_counter()
      for _ in range(steps):
        batch = next(iterator)
      rates.append(steps * BATCH_SIZE / (time.perf_counter() - start))
    assert batch.shape == (BATCH_SIZE, *data.get_dataset_info(name).image_shape)
  return statistics.median(rates), rates


def train_step_images_per_s(config_name, steps):
  """images/s of the library's training step (median of `steps` after a warm-up)."""
  dataset, model_config = benchlib.config(config_name)
  with tempfile.TemporaryDirectory(prefix="realnvp_bench_") as model_dir:
    trainer, iterator = benchlib.random_image_training(model_config, dataset,
                                                       BATCH_SIZE, 0, model_dir)
    float(trainer.train_step(iterator)[0])  # traces
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      float(trainer.train_step(iterator)[0])
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
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
