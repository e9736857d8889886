"""score.py's throughput beside eval.py's, in images/s, on one SavedModel.

Exports `--config`'s flow (benchlib; the default bench config: 28x28x1, 2 scales, 4
blocks, 32 filters), float32 or bfloat16, and times, on the same `--images` random
images of its shape and grey levels:

- `eval_images_per_s`: eval.py's test figure (`likelihood.evaluate_bits_per_dim` over
  the evaluation pipeline: dequantized batches into the SavedModel's `log_prob`);
- `score_npy_images_per_s`: score.py on a .npy file (`scoring.score_to_file`: uint8
  batches into `ood_scores`, which adds the PNG encoding of every image, and the
  rows written as CSV);
- `score_png_folder_images_per_s`: the same from a folder of PNG files (decoded).

Each figure is the median of `--repeats` timed passes after an untimed one (tracing).
Prints one JSON line. Usage:  python bench/scoring.py [--precision=bfloat16]
(`--config=smoke`: the tests' model, seconds for a check that every figure comes).
"""

import json
import os
import statistics
import tempfile
import time

from absl import flags
import numpy as np
import tensorflow as tf

import benchlib
from realnvp_tf import data
from realnvp_tf.data import image_inputs
from realnvp_tf.evaluation import likelihood
from realnvp_tf.model import flow as flow_lib
from realnvp_tf.ood import scoring
from realnvp_tf.runs import export
from realnvp_tf.runs import loading

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "bench", list(benchlib.CONFIGS), "The model (benchlib).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "s/t precision.")
flags.DEFINE_integer("images", 2048, "Images per pass.")
flags.DEFINE_integer("batch_size", 256, "Batch size of both commands.")
flags.DEFINE_integer("repeats", 3, "Timed passes per figure.")


def _median_rate(run, count):
  run()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return count / statistics.median(times)


def main(argv):
  del argv
  _, config = benchlib.config(FLAGS.config, FLAGS.precision)
  height, width, channels = config.image_shape
  rng = np.random.default_rng(0)
  # Smooth random images (low-pass noise), so that PNG has something to compress.
  coarse = rng.integers(0, config.num_levels, (
      FLAGS.images, max(1, height // 4), max(1, width // 4), channels))
  images = tf.cast(tf.image.resize(coarse.astype(np.float32), (height, width)),
                   tf.uint8).numpy()
  with tempfile.TemporaryDirectory() as tmp:
    export.export_saved_model(flow_lib.build_realnvp(config), os.path.join(tmp, "m"))
    model = loading.load_saved_model(os.path.join(tmp, "m"))
    array = tf.data.Dataset.from_tensor_slices(images)
    info = data.from_tf_data(array.take(FLAGS.batch_size), None, array,
                             config.image_shape)
    eval_rate = _median_rate(lambda: likelihood.evaluate_bits_per_dim(
        model.log_prob, data.make_dataset(info, "test", FLAGS.batch_size,
                                          training=False), config.image_shape),
                             FLAGS.images)
    np.save(os.path.join(tmp, "x.npy"), images)
    folder = os.path.join(tmp, "png")
    os.makedirs(folder)
    for i, image in enumerate(images):
      tf.io.write_file(os.path.join(folder, f"{i:05d}.png"), tf.io.encode_png(image))
    rates = {}
    for name, spec in (("npy", os.path.join(tmp, "x.npy")), ("png_folder", folder)):
      rates[name] = _median_rate(lambda spec=spec: scoring.score_to_file(
          model, image_inputs.open_inputs(spec, config.image_shape, config.num_levels),
          os.path.join(tmp, "rows.csv"), FLAGS.batch_size), FLAGS.images)
  print(json.dumps(dict(
      config=FLAGS.config, precision=FLAGS.precision, images=FLAGS.images,
      batch_size=FLAGS.batch_size, eval_images_per_s=round(eval_rate, 1),
      score_npy_images_per_s=round(rates["npy"], 1),
      score_png_folder_images_per_s=round(rates["png_folder"], 1),
      score_to_eval=round(min(rates.values()) / eval_rate, 3),
      machine=benchlib.machine_info())))


if __name__ == "__main__":
  benchlib.run(main)
