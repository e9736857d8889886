"""Quality at equal budget: train the bench config for N minutes, then test bits/dim.

Trains the bench config (2 scales, 4 residual blocks, 32 filters, batch 64) on real
MNIST through the library's loop (`training.Trainer.train`: its data pipeline, its
distributed step, its actions) with a `actions.TimeBudget` stop condition of --minutes,
re-estimates the batch-norm statistics for the final weights as `Trainer.finish` does
(--batch_norm_recalibration_batches; not counted in the budget), then evaluates with
`likelihood.evaluate_bits_per_dim`, in inference mode (EMA weights when --ema_decay >
0), on all 10,000 test images. Side by side it reports the training batches' own
bits/dim (the training loss without L2, batch statistics, raw weights; mean of the
last --train_tail finite steps) and, on --train_eval_images training images, the same
inference-mode figure as the test one, so a gap between training and evaluation modes
shows apart from overfitting; the latter also before the re-estimation
(`train_eval_bits_per_dim_moving_averages`).

The clock starts when the loop is set up (data preparation from --manual_dir is done
before and not counted; the first step's tracing is counted) and stops after the
first step that ends past the deadline (or at --max_steps).

Prints one JSON line; progress goes to stderr. Usage:

  python bench/budget.py --minutes=20 --manual_dir=../shared/data/mnist
  python bench/budget.py --minutes=0.1 --max_steps=10 --dataset=digits   # smoke
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

import benchlib
from realnvp_tf.training import actions
from realnvp_tf.apps import cli

FLAGS = flags.FLAGS
_BENCH = benchlib.CONFIGS["bench"]

cli.define_data_flags()
cli.define_model_flags()
cli.define_optimization_flags()
cli.register_model_validators()
flags.adopt_module_key_flags(cli)
# The bench config by default.
for _name in ("dataset", "num_scales", "num_res_blocks", "num_filters"):
  flags.FLAGS.set_default(_name, _BENCH[_name])

flags.DEFINE_float("minutes", 20.0, "Wall-clock training budget in minutes.")
flags.DEFINE_integer("max_steps", 0, "Stop after this many steps even within the "
                     "budget (0: no cap; for smoke tests).")
# Reporting.
flags.DEFINE_integer("eval_batch_size", 256, "Evaluation batch size.")
flags.DEFINE_integer("train_tail", 50, "Training batches averaged for the train-batch "
                     "bits/dim.")
flags.DEFINE_integer("train_eval_images", 2000, "Training images evaluated in "
                     "inference mode, like the test set (0: skip).")
flags.DEFINE_integer("log_every", 100, "Steps between progress lines on stderr.")


class _Clock:
  """An action: the time of the first step (it traces) and of the last."""

  def __init__(self, log_every, seconds):
    self.start = time.perf_counter()
    self.after_first = self.end = None
    self.log_every, self.seconds = log_every, seconds

  def __call__(self, result):
    self.end = time.perf_counter()
    if self.after_first is None:
      self.after_first = self.end
    if self.log_every and result.step % self.log_every == 0:
      print(f"step {result.step}: train bits/dim {result.bits:.4f}, "
            f"{self.end - self.start:.0f} s of {self.seconds:.0f}", file=sys.stderr,
            flush=True)


def main(argv):
  del argv
  t_start = time.perf_counter()
  if FLAGS.minutes <= 0 or FLAGS.max_steps < 0 or FLAGS.train_tail < 1:
    raise app.UsageError("--minutes must be > 0, --max_steps >= 0, --train_tail >= 1.")

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realnvp_tf import data  # pylint: disable=g-import-not-at-top
  from realnvp_tf import training  # pylint: disable=g-import-not-at-top
  from realnvp_tf.apps import process  # pylint: disable=g-import-not-at-top
  from realnvp_tf.evaluation import likelihood  # pylint: disable=g-import-not-at-top

  tf.get_logger().setLevel("ERROR")
  # As train.py does, before TensorFlow starts its threads.
  arenas_limited = process.limit_malloc_arenas()
  machine = benchlib.machine_info()
  info = data.get_dataset_info(FLAGS.dataset)
  model_config = cli.model_config_from_flags()

  temporary = tempfile.mkdtemp(prefix="realnvp_budget_")
  data_dir = FLAGS.data_dir or os.path.join(temporary, "tfds")
  trainer = None
  try:
    # The loop of train.py without its periodic checkpoints, evaluations and export.
    train_config = dataclasses.replace(
        cli.train_config_from_flags(), train_steps=FLAGS.max_steps or 10**9,
        checkpoint_every=10**9, eval_every=0, eval_batch_size=FLAGS.eval_batch_size,
        log_every=FLAGS.log_every or 100, data_dir=data_dir, export=False)
    prepare_start = time.perf_counter()
    # tfds prints its progress to stdout, which is for the JSON line alone.
    with contextlib.redirect_stdout(sys.stderr):
      data.prepare_dataset(FLAGS.dataset, data_dir=data_dir,
                           manual_dir=FLAGS.manual_dir)
    prepare_s = time.perf_counter() - prepare_start

    trainer = training.Trainer(model_config, train_config,
                               model_dir=os.path.join(temporary, "run"))
    clock = _Clock(FLAGS.log_every, FLAGS.minutes * 60.0)
    tail = actions.LossTracker(FLAGS.train_tail)
    trainer.train([tail, clock], [actions.TimeBudget(FLAGS.minutes * 60.0)],
                  progress=False)
    steps = int(trainer.state.step.numpy())
    steady = (steps - 1) * FLAGS.batch_size / (clock.end - clock.after_first)
    run = dict(steps=steps, train_seconds=clock.end - clock.start,
               first_step_seconds=clock.after_first - clock.start,
               steady_images_per_s=steady if steps > 1 else float("nan"),
               train_batch_bits_per_dim=tail.mean, train_batch_count=len(tail.recent),
               nonfinite_steps=int(trainer.state.nonfinite_total.numpy()),
               final_learning_rate=float(trainer.state.optimizer.learning_rate))

    eval_start = time.perf_counter()
    with trainer.state.averaged_weights():
      train_eval = train_eval_moving = None
      if FLAGS.train_eval_images:
        batches = math.ceil(FLAGS.train_eval_images / FLAGS.eval_batch_size)
        train_images = data.make_dataset(
            FLAGS.dataset, "train", batch_size=FLAGS.eval_batch_size, training=False,
            data_dir=data_dir, manual_dir=FLAGS.manual_dir, seed=FLAGS.seed)
        score_train_images = lambda: likelihood.evaluate_bits_per_dim(
            trainer.state.flow.log_prob, train_images.take(batches), info.image_shape)
        # Before the re-estimation: what the moving averages alone would give.
        train_eval_moving = score_train_images()
      recalibration_start = time.perf_counter()
      recalibrated = trainer.recalibrate_batch_norm(
          FLAGS.batch_norm_recalibration_batches)
      recalibration_s = time.perf_counter() - recalibration_start
      test = likelihood.evaluate_bits_per_dim(
          trainer.state.flow.log_prob, trainer.selection.dataset("test"), info.image_shape)
      if FLAGS.train_eval_images:
        train_eval = score_train_images()
    eval_s = time.perf_counter() - eval_start
  except (ValueError, data.DataUnavailableError, training.NonFiniteLossError) as e:
    raise SystemExit(f"budget.py: error: {e}")
  finally:
    if trainer is not None:
      trainer.close()
    shutil.rmtree(temporary, ignore_errors=True)

  result = {
      "benchmark": "budget",
      "dataset": FLAGS.dataset,
      "test_bits_per_dim": test["bits_per_dim"],
      "test_bits_per_dim_stderr": test["bits_per_dim_stderr"],
      "test_images": test["num_images"],
      "train_batch_bits_per_dim": run["train_batch_bits_per_dim"],
      "train_batch_count": run["train_batch_count"],
      "train_eval_bits_per_dim": train_eval["bits_per_dim"] if train_eval else None,
      "train_eval_images": train_eval["num_images"] if train_eval else 0,
      "train_eval_bits_per_dim_moving_averages": (
          train_eval_moving["bits_per_dim"] if train_eval_moving else None),
      "batch_norm_recalibration_batches": recalibrated,
      "batch_norm_recalibration_seconds": recalibration_s,
      "steps": run["steps"],
      "images_seen": run["steps"] * FLAGS.batch_size,
      "epochs": run["steps"] * FLAGS.batch_size / info.num_train,
      "nonfinite_steps": run["nonfinite_steps"],
      "budget_minutes": FLAGS.minutes,
      "max_steps": FLAGS.max_steps,
      "train_seconds": run["train_seconds"],
      "first_step_seconds": run["first_step_seconds"],
      "steady_train_images_per_s": run["steady_images_per_s"],
      "eval_seconds": eval_s,
      "prepare_seconds": prepare_s,
      "settings": {
          "precision": FLAGS.mixed_precision,
          "batch_size": FLAGS.batch_size,
          "learning_rate": FLAGS.learning_rate,
          "warmup_steps": FLAGS.warmup_steps,
          "final_learning_rate": run["final_learning_rate"],
          "ema_decay": FLAGS.ema_decay,
          "batch_norm_momentum": FLAGS.batch_norm_momentum,
          "l2_coeff": FLAGS.l2_coeff,
          "clip_norm": FLAGS.clip_norm,
          "seed": FLAGS.seed,
          "initialisation": ("library default: weight-norm directions N(0, 0.05), "
                             "gains 1, zero gain on each s/t net's last conv "
                             "(couplings start at the identity)"),
          "evaluation": (
              "inference mode, batch-norm statistics "
              + (f"re-estimated on {recalibrated} training batches after training"
                 if recalibrated else "= the moving averages")
              + (", EMA weights" if FLAGS.ema_decay else ", raw weights")),
      },
      "model_config": dataclasses.asdict(model_config),
      "peak_rss_mb": benchlib.peak_rss_mb(),
      "machine": machine, "malloc_arenas_limited": arenas_limited,
      "total_seconds": time.perf_counter() - t_start,
  }
  print(json.dumps(benchlib.clean_json(result), allow_nan=False), flush=True)
  benchlib.skip_final_collection()


if __name__ == "__main__":
  app.run(main)
