"""Scores images with a trained RealNVP: one row per image, out-of-distribution scores.

  realnvp-score --saved_model=runs/fashion/export --images=photos/ --output=scores.csv
  python score.py --saved_model=runs/fashion/export --images='shots/*.jpg' \\
      --output=scores.jsonl
  python score.py --saved_model=runs/fashion/export --dataset=mnist --split=test \\
      --manual_dir=/path/to/mnist_files --output=mnist.csv
  python score.py --pretrained=digits --images=my_digits/ --output=scores.csv

Each row: index, image, bits_per_dim, png_bits_per_dim, complexity_corrected and
typicality (see realnvp_tf.ood.scores); higher scores mean "less like the training
data".
"""

import sys

from realnvp_tf.apps import process

process.import_tensorflow_quietly()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import tensorflow as tf  # noqa: E402

from realnvp_tf import data  # noqa: E402
from realnvp_tf.apps import cli  # noqa: E402
from realnvp_tf.apps import messages  # noqa: E402
from realnvp_tf.data import image_folder  # noqa: E402
from realnvp_tf.ood import scoring  # noqa: E402

FLAGS = flags.FLAGS

cli.define_trained_model_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
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
    model = _load_model()
    inputs = scoring.open_images(model, FLAGS.images, FLAGS.dataset, FLAGS.split,
                                 FLAGS.data_dir, FLAGS.manual_dir)
    summary = scoring.score_to_file(model, inputs, FLAGS.output, FLAGS.batch_size,
                                    FLAGS.seed, FLAGS.fail_on_bad_images)
  except (ValueError, OSError, data.DataUnavailableError) as e:
    print(messages.error_line("score.py", e), file=sys.stderr)
    sys.exit(1)
  if summary["bad_files"]:
    logging.warning("%d files cannot be decoded as images and have no row: %s",
                    len(summary["bad_files"]),
                    image_folder.listing(summary["bad_files"]))
  print(scoring.summary_line(summary, model, inputs.description))


def _load_model():
  """The model, once the flags that need no model are checked."""
  if not FLAGS.output:
    raise ValueError("pass --output=FILE.csv or FILE.jsonl for the rows.")
  scoring.output_format(FLAGS.output)
  return cli.load_trained_model()


def run():
  """The console script `realnvp-score`."""
  cli.run_app(main, __name__)
