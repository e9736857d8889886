"""Trains RealNVP on an image dataset.

  realnvp-train --config=mnist --model_dir=runs/mnist
  python train.py --dataset=mnist --flagfile=configs/mnist.cfg --model_dir=runs/mnist

Re-running with the same --model_dir resumes from its latest checkpoint. The run leaves
in --model_dir: config.json, checkpoints/, best/ (the best validation weights),
TensorBoard logs (train/, validation/, test/), metrics.json and the export/ SavedModel.
"""

import sys

from realnvp_tf.apps import process

process.import_tensorflow_quietly()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from realnvp_tf import data  # noqa: E402
from realnvp_tf import training  # noqa: E402
from realnvp_tf.apps import cli  # noqa: E402
from realnvp_tf.apps import messages  # noqa: E402

FLAGS = flags.FLAGS

cli.define_config_flag()
cli.define_data_flags()
cli.define_model_flags()
cli.define_optimization_flags()
cli.define_run_flags()
flags.mark_flag_as_required("model_dir")
cli.register_model_validators()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  process.limit_malloc_arenas()
  try:
    trainer = training.Trainer(cli.model_config_from_flags(),
                               cli.train_config_from_flags(), FLAGS.model_dir)
    metrics = trainer.fit()
  except (ValueError, OSError, data.DataUnavailableError,
          training.NonFiniteLossError) as e:
    print(messages.error_line("train.py", e), file=sys.stderr)
    sys.exit(1)
  if metrics:
    print(closing_lines(metrics))


def closing_lines(metrics):
  """The lines train.py ends with: the validation curve, then the test figure of the
  selected weights."""
  lines = []
  if metrics["validation_history"]:
    lines.append("validation bits/dim: " + ", ".join(
        f"{value:.4f} (step {step})" for step, value in metrics["validation_history"]))
  chosen = metrics["selected_validation_bits_per_dim"]
  lines.append(
      f"test bits/dim{' -log p(x|y)' if metrics.get('class_counts') else ''}: "
      f"{metrics['bits_per_dim']:.4f} "
      f"+- {metrics['bits_per_dim_stderr']:.4f} "
      f"({metrics['num_images']} images; weights of step {metrics['selected_step']}"
      + (f", validation {chosen:.4f}" if chosen is not None else "")
      + f"; {metrics['select']} of {metrics['step']} steps)")
  if "classifier" in metrics:
    lines.append(classifier_line(metrics["classifier"]))
  return "\n".join(lines)


def classifier_line(classifier):
  """A class-conditional model's closing line: its generative classifier."""
  return (f"classifier accuracy: {classifier['accuracy']:.4f} (prior p(y): "
          f"{classifier['prior']}; {classifier['accuracy_uniform_prior']:.4f} with a "
          f"uniform prior; marginal bits/dim -log p(x) "
          f"{classifier['marginal_bits_per_dim']:.4f}; {classifier['num_images']} "
          f"images)")


def run():
  """The console script `realnvp-train`."""
  cli.run_app(main, __name__, argv=cli.expand_config_flag(sys.argv))
