"""Trains RealNVP on an image dataset.

  realnvp-train --config=mnist --model_dir=runs/mnist
  python train.py --dataset=mnist --flagfile=configs/mnist.cfg --model_dir=runs/mnist

Re-running with the same --model_dir resumes from its latest checkpoint. The run leaves
checkpoints, TensorBoard logs (train/, test/), metrics.json and an export/ SavedModel
in --model_dir.
"""

import sys

from absl import flags
import tensorflow as tf

from realnvp_tf import cli
from realnvp_tf import data
from realnvp_tf import training

FLAGS = flags.FLAGS

cli.define_config_flag()
cli.define_data_flags()
cli.define_model_flags()
cli.define_optimization_flags()
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs, metrics.json, "
                    "export/ SavedModel. Re-running with the same directory resumes.")
flags.DEFINE_integer("train_steps", 100_000, "Optimizer steps in all.")
flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints.")
flags.DEFINE_integer("eval_every", 5000, "Steps between validation evaluations (0: "
                     "only at the end); they pick the best weights.")
flags.DEFINE_integer("eval_images", 2000, "Validation images in periodic evaluations "
                     "(the same each time; 0: the whole split).")
flags.DEFINE_integer("eval_batch_size", 256, "Evaluation batch size.")
flags.DEFINE_integer("log_every", 100, "Steps between TensorBoard scalars.")
flags.DEFINE_bool("export", True, "Export a SavedModel to model_dir/export at the end.")
flags.mark_flag_as_required("model_dir")
cli.register_model_validators()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  training.limit_malloc_arenas()
  try:
    trainer = training.Trainer(cli.model_config_from_flags(),
                               cli.train_config_from_flags(), FLAGS.model_dir)
    metrics = trainer.fit()
  except (ValueError, OSError, data.DataUnavailableError,
          training.NonFiniteLossError) as e:
    print(f"train.py: error: {e}", file=sys.stderr)
    sys.exit(1)
  if metrics:
    print(training.summary(metrics))


def run():
  """The console script `realnvp-train`."""
  cli.run_app(main, __name__, argv=cli.expand_config_flag(sys.argv))
