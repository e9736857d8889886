"""Evaluates a trained RealNVP: test NLL in bits/dim, sample grids, latent manifold.

  realnvp-eval --saved_model=runs/mnist/export --output=runs/mnist/eval.json \
      --temperatures=1.0,0.7 --manifold
  python eval.py --saved_model=runs/mnist/export --manual_dir=../shared/data/mnist

or --model_dir=runs/mnist to evaluate the latest checkpoint instead of the export.
A class-conditional model reports -log p(x | y), the marginal -log p(x) and the
accuracy of its generative classifier, and draws grids with a row per class.
Out-of-distribution detection (AUROC, AUPR, FPR95 of each score, against the test
split):

  python eval.py --saved_model=runs/fashion/export --ood_dataset=mnist
"""

import json
import os
import sys

from absl import flags
import tensorflow as tf

from realnvp_tf import cli
from realnvp_tf import data
from realnvp_tf import evaluation
from realnvp_tf import ood_evaluation
from realnvp_tf.config import COMPUTE_DTYPES

FLAGS = flags.FLAGS

flags.DEFINE_string("saved_model", None, "An export/ directory written by train.py.")
flags.DEFINE_string("model_dir", None, "A train.py model_dir: its latest checkpoint.")
flags.DEFINE_string("dataset", None, "Dataset: a name or tfds:NAME[/CONFIG] (default: "
                    "the images the model was trained on).")
flags.DEFINE_string("image_dir", None, "Evaluate the images of this folder instead "
                    "(brought to the model's size and channels; its splits as in "
                    "training).")
flags.DEFINE_string("split", "test", "Split: test, validation, train, or a tfds split "
                    "string.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("manual_dir", None, "Folder with the official raw files.")
flags.DEFINE_string("output", None, "Write the metrics here as JSON.")
flags.DEFINE_string("output_dir", None, "Folder for the PNGs (default: next to "
                    "--output, or the current directory).")
flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("num_dequant_samples", 1, "S > 1: importance-weighted bound "
                     "-log mean_s p(x + u_s), tighter as S grows.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the dequantization noise and the samples.")
flags.DEFINE_list("temperatures", [], "Write a sample grid PNG per temperature, "
                  "e.g. 1.0,0.7.")
flags.DEFINE_integer("num_samples", 64, "Samples per grid.", lower_bound=1)
flags.DEFINE_integer("samples_per_class", 8, "Class-conditional models: samples in "
                     "each class's row of a grid.", lower_bound=1)
flags.DEFINE_bool("manifold", False, "Write the paper's latent manifold figure.")
flags.DEFINE_enum("mixed_precision", None, list(COMPUTE_DTYPES),
                  "With --model_dir: evaluate in this precision instead of the one "
                  "trained with (a SavedModel keeps the precision it was exported with).")
flags.DEFINE_string("ood_dataset", None, "Out-of-distribution evaluation against this "
                    "set: a dataset name, tfds:NAME[/CONFIG], uniform_noise or "
                    "constant (synthetic, as many images as --split's).")
flags.DEFINE_string("ood_images", None, "Out-of-distribution evaluation against these "
                    "images: a folder, a glob pattern, or a .npy/.npz file.")
flags.DEFINE_string("ood_split", "test", "Split of --ood_dataset.")
flags.DEFINE_string("ood_manual_dir", None, "Official raw files of --ood_dataset "
                    "(like --manual_dir; default: --manual_dir).")
flags.DEFINE_integer("ood_max_images", 0, "Score at most this many images of each set "
                     "in the OOD evaluation (0: all).", lower_bound=0)
flags.DEFINE_string("ood_histogram", None, "Write a PNG of both sets' score histograms "
                    "here (a panel per score: in-distribution blue, OOD orange).")
flags.register_multi_flags_validator(
    ["ood_dataset", "ood_images"], lambda v: not (v["ood_dataset"] and v["ood_images"]),
    message="pass at most one of --ood_dataset and --ood_images")
flags.register_multi_flags_validator(
    ["saved_model", "model_dir"], lambda v: bool(v["saved_model"]) != bool(v["model_dir"]),
    message="pass exactly one of --saved_model and --model_dir")


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  try:
    metrics = evaluation.run(
        saved_model=FLAGS.saved_model, model_dir=FLAGS.model_dir, dataset=FLAGS.dataset,
        image_dir=FLAGS.image_dir,
        split=FLAGS.split, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        batch_size=FLAGS.batch_size, num_dequant_samples=FLAGS.num_dequant_samples,
        seed=FLAGS.seed, temperatures=[float(t) for t in FLAGS.temperatures],
        num_samples=FLAGS.num_samples, samples_per_class=FLAGS.samples_per_class,
        manifold=FLAGS.manifold,
        compute_dtype=FLAGS.mixed_precision, ood_dataset=FLAGS.ood_dataset,
        ood_images=FLAGS.ood_images, ood_split=FLAGS.ood_split,
        ood_manual_dir=FLAGS.ood_manual_dir, ood_max_images=FLAGS.ood_max_images or None,
        ood_histogram=FLAGS.ood_histogram,
        output_dir=FLAGS.output_dir or (os.path.dirname(os.path.abspath(FLAGS.output))
                                        if FLAGS.output else os.getcwd()))
  except (ValueError, data.DataUnavailableError) as e:
    print(f"eval.py: error: {e}", file=sys.stderr)
    sys.exit(1)
  if FLAGS.output:
    with tf.io.gfile.GFile(FLAGS.output, "w") as f:
      json.dump(metrics, f, indent=2)
  what = " -log p(x|y)" if "classifier" in metrics else ""
  print(f"{metrics['split']} bits/dim{what}: {metrics['bits_per_dim']:.5f} "
        f"+- {metrics['bits_per_dim_stderr']:.5f} ({metrics['num_images']} images"
        + (f", S={metrics['num_dequant_samples']}" if metrics['num_dequant_samples'] > 1
           else "") + ")")
  if "classifier" in metrics:
    print(evaluation.classifier_summary(metrics["classifier"]))
  if "ood" in metrics:
    print(ood_evaluation.table(metrics["ood"]))


def run():
  """The console script `realnvp-eval`."""
  cli.run_app(main, __name__)
