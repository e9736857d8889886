"""Scores images with a trained RealNVP: one row per image, out-of-distribution scores.

  realnvp-score --saved_model=runs/fashion/export --images=photos/ --output=scores.csv
  python score.py --saved_model=runs/fashion/export --images='shots/*.jpg' \\
      --output=scores.jsonl
  python score.py --saved_model=runs/fashion/export --dataset=mnist --split=test \\
      --manual_dir=../shared/data/mnist --output=mnist.csv

Each row: index, image, bits_per_dim, png_bits_per_dim, complexity_corrected and
typicality (see realnvp_tf.ood); higher scores mean "less like the training data".
"""

import sys

from absl import flags
from absl import logging
import tensorflow as tf

from realnvp_tf import cli
from realnvp_tf import data
from realnvp_tf import scoring

FLAGS = flags.FLAGS

flags.DEFINE_string("saved_model", None, "An export/ directory written by train.py.")
flags.DEFINE_string("model_dir", None, "A train.py model_dir (its selected weights).")
flags.DEFINE_string("images", None, "Images to score: a folder (searched recursively), "
                    "a glob pattern, or a .npy/.npz file (uint8 [N, H, W(, C)]; "
                    "FILE.npz:NAME picks an array).")
flags.DEFINE_string("dataset", None, "Or score a dataset split: a name or "
                    "tfds:NAME[/CONFIG].")
flags.DEFINE_string("split", "test", "Split of --dataset.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("manual_dir", None, "Folder with the official raw files of "
                    "--dataset.")
flags.DEFINE_string("output", None, "Rows go here: FILE.csv or FILE.jsonl.")
flags.DEFINE_integer("batch_size", 256, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the dequantization noise.")
flags.DEFINE_bool("fail_on_bad_images", False, "Refuse (write nothing) when files "
                  "cannot be decoded; by default they get no row and are listed.")


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  try:
    summary, line = scoring.score(
        FLAGS.saved_model, FLAGS.model_dir, FLAGS.images, FLAGS.dataset, FLAGS.split,
        FLAGS.output, FLAGS.batch_size, FLAGS.seed, FLAGS.fail_on_bad_images,
        FLAGS.data_dir, FLAGS.manual_dir)
  except (ValueError, OSError, data.DataUnavailableError) as e:
    print(f"score.py: error: {e}", file=sys.stderr)
    sys.exit(1)
  if summary["bad_files"]:
    logging.warning("%d files cannot be decoded as images and have no row: %s",
                    len(summary["bad_files"]), scoring.listing(summary["bad_files"]))
  print(line)


def run():
  """The console script `realnvp-score`."""
  cli.run_app(main, __name__)
