"""Evaluates a trained RealNVP: test NLL in bits/dim, sample grids, latent manifold.

  realnvp-eval --saved_model=runs/mnist/export --output=runs/mnist/eval.json \
      --temperatures=1.0,0.7 --manifold
  python eval.py --saved_model=runs/mnist/export --manual_dir=/path/to/mnist_files

or --model_dir=runs/mnist to evaluate the run's selected weights (those of the best
validation figure by default) from its checkpoints instead of the export, or
--pretrained=NAME for a model shipped in the package (`python eval.py
--pretrained=digits`: no training first).
A class-conditional model reports -log p(x | y), the marginal -log p(x) and the
accuracy of its generative classifier, and draws grids with a row per class.
Out-of-distribution detection (AUROC, AUPR, FPR95 of each score, against the test
split):

  python eval.py --saved_model=runs/fashion/export --ood_dataset=mnist
"""

import json
import os
import sys

from realnvp_tf.apps import process

process.import_tensorflow_quietly()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from realnvp_tf import data  # noqa: E402
from realnvp_tf.apps import cli  # noqa: E402
from realnvp_tf.apps import messages  # noqa: E402
from realnvp_tf.evaluation import classifier  # noqa: E402
from realnvp_tf.evaluation import figures  # noqa: E402
from realnvp_tf.evaluation import likelihood  # noqa: E402
from realnvp_tf.evaluation import model_images  # noqa: E402
from realnvp_tf.model.config import COMPUTE_DTYPES  # noqa: E402
from realnvp_tf.ood import evaluation as ood_evaluation  # noqa: E402

FLAGS = flags.FLAGS

cli.define_trained_model_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
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
                  "trained with (a SavedModel keeps the precision it was exported "
                  "with).")
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


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  try:
    model = cli.load_trained_model(FLAGS.mixed_precision)
    info = model_images.data_info(model, FLAGS.dataset, FLAGS.image_dir,
                                  FLAGS.data_dir, FLAGS.manual_dir)
    images = model_images.evaluation_dataset(model, info, FLAGS.split,
                                             FLAGS.batch_size, FLAGS.seed)
    metrics = _likelihood(model, info, images)
    if model.num_classes:
      metrics["classifier"] = classifier.classifier_metrics(model, images)
    metrics.update(_figures(model, images))
    if FLAGS.ood_dataset or FLAGS.ood_images:
      metrics["ood"] = _ood(model, info.name, metrics["num_images"])
  except (ValueError, data.DataUnavailableError) as e:
    print(messages.error_line("eval.py", e), file=sys.stderr)
    sys.exit(1)
  if FLAGS.output:
    with tf.io.gfile.GFile(FLAGS.output, "w") as f:
      json.dump(metrics, f, indent=2)
  print(_summary(metrics))


def _likelihood(model, info, images):
  """The split's bits/dim (-log p(x | y) for a class-conditional model)."""
  result = likelihood.evaluate_bits_per_dim(
      model.log_prob, images, model.image_shape,
      num_dequant_samples=FLAGS.num_dequant_samples, seed=FLAGS.seed)
  metrics = {k: v for k, v in result.items() if k != "per_image"}
  metrics.update(dataset=info.name, split=FLAGS.split, model=model.source,
                 compute_dtype=model.metadata["model"]["compute_dtype"],
                 num_dequant_samples=FLAGS.num_dequant_samples, seed=FLAGS.seed)
  return metrics


def _output_dir():
  if FLAGS.output_dir:
    return FLAGS.output_dir
  return os.path.dirname(os.path.abspath(FLAGS.output)) if FLAGS.output else os.getcwd()


def _figures(model, images):
  """The sample grids (a row per class for a class-conditional model) and the
  manifold figure the flags ask for: {name: PNG path(s)}."""
  written = {}
  for temperature in (float(t) for t in FLAGS.temperatures):
    path = os.path.join(_output_dir(), f"samples_t{temperature:g}.png")
    grid = figures.sample_grid(model, temperature, [FLAGS.seed, 0], FLAGS.num_samples,
                               FLAGS.samples_per_class)
    figures.write_png(path, grid)
    written.setdefault("sample_grids", []).append(path)
  if FLAGS.manifold:
    path = os.path.join(_output_dir(), "manifold.png")
    figures.write_png(path, figures.manifold_grid(model, next(iter(images))))
    written["manifold"] = path
  return written


def _ood(model, dataset, num_images):
  """The OOD evaluation of (up to --ood_max_images of) --split against the OOD set."""
  inside = model_images.split_inputs(model, dataset, FLAGS.image_dir, FLAGS.split,
                                     FLAGS.data_dir, FLAGS.manual_dir)
  count = min(FLAGS.ood_max_images or num_images, num_images)
  outside = ood_evaluation.ood_inputs(
      model, FLAGS.ood_dataset, FLAGS.ood_images, FLAGS.ood_split, count,
      FLAGS.data_dir, FLAGS.ood_manual_dir or FLAGS.manual_dir, FLAGS.seed)
  result, in_scores, out_scores = ood_evaluation.evaluate(
      model, inside, outside, FLAGS.batch_size, FLAGS.seed,
      FLAGS.ood_max_images or None)
  if FLAGS.ood_histogram:
    figures.write_png(FLAGS.ood_histogram,
                      ood_evaluation.histogram(in_scores, out_scores))
    result["histogram"] = FLAGS.ood_histogram
  return result


def _summary(metrics):
  """The lines eval.py prints: the split's figure, then the classifier's and the OOD
  table when they were evaluated."""
  what = " -log p(x|y)" if "classifier" in metrics else ""
  lines = [f"{metrics['split']} bits/dim{what}: {metrics['bits_per_dim']:.5f} "
           f"+- {metrics['bits_per_dim_stderr']:.5f} ({metrics['num_images']} images"
           + (f", S={metrics['num_dequant_samples']}"
              if metrics["num_dequant_samples"] > 1 else "") + ")"]
  if "classifier" in metrics:
    c = metrics["classifier"]
    lines.append(
        f"marginal bits/dim -log p(x): {c['marginal_bits_per_dim']:.5f} "
        f"+- {c['marginal_bits_per_dim_stderr']:.5f}\n"
        f"classifier accuracy: {c['accuracy']:.4f} (prior p(y): {c['prior']}; "
        f"{c['accuracy_uniform_prior']:.4f} with a uniform prior; {c['num_images']} "
        f"images)")
  if "ood" in metrics:
    lines.append(ood_evaluation.table(metrics["ood"]))
  return "\n".join(lines)


def run():
  """The console script `realnvp-eval`."""
  cli.run_app(main, __name__)
