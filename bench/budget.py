"""Quality at equal budget: train for N minutes as train.py would, then test bits/dim.

Trains through the library's `training.Trainer` with `--train_minutes` (its data
pipeline, its step, its actions, its validation and best-weights selection, and the
learning-rate decay fitted to the budget when --decay is on), finishes the run as
train.py does (batch-norm statistics re-estimated for the final weights, the last
validation, the selected weights' test figure; not counted in the budget), and
reports in one JSON line:

- `selected_test_bits_per_dim`: the test figure of the weights a user's run would
  export (`--select`, by default the best validation figure), with their step;
- `test_bits_per_dim`: the last weights' test figure;
- the learning curve (`curve`: [minutes, step, validation bits/dim] of each
  evaluation; `--eval_every` sets the cadence, evaluations count in the budget);
- steps, images/s after the first step, the training batches' own bits/dim (mean of
  the last --train_tail finite steps) and, on --train_eval_images training images,
  the last weights' inference-mode figure, so overfitting shows apart from the gap
  between training and inference modes.

It reads the flags train.py reads, so one flagfile serves both:

  python bench/budget.py --flagfile=configs/mnist_fast.cfg \\
      --manual_dir=/path/to/mnist_files
  python bench/budget.py --minutes=20 --manual_dir=/path/to/mnist_files   # bench config
  python bench/budget.py --minutes=0.1 --max_steps=10 --dataset=digits   # smoke

The clock starts when the loop is set up (data preparation from --manual_dir is done
before and not counted; the first step's tracing is counted) and stops after the first
call that ends past the deadline (or at --max_steps / --train_steps). Progress goes to
stderr.
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

from absl import flags

import benchlib
from realnvp_tf.apps import cli
from realnvp_tf.apps import messages
from realnvp_tf.training import actions

FLAGS = flags.FLAGS
_BENCH = benchlib.CONFIGS["bench"]
_DEFAULT_MINUTES = 20.0

cli.define_data_flags()
cli.define_model_flags()
cli.define_optimization_flags()
cli.define_run_flags()
cli.register_model_validators()
flags.adopt_module_key_flags(cli)
# The bench config by default (a flagfile's values override these).
for _name in ("dataset", "num_scales", "num_res_blocks", "num_filters"):
  flags.FLAGS.set_default(_name, _BENCH[_name])

flags.DEFINE_float("minutes", None, "Wall-clock training budget in minutes (default: "
                   f"--train_minutes if set, else {_DEFAULT_MINUTES:g}).")
flags.DEFINE_integer("max_steps", 0, "Stop after this many steps even within the "
                     "budget (0: --train_steps; for smoke tests).", lower_bound=0)
flags.DEFINE_integer("train_tail", 50, "Training batches averaged for the train-batch "
                     "bits/dim.", lower_bound=1)
flags.DEFINE_integer("train_eval_images", 2000, "Training images evaluated in "
                     "inference mode, like the test set (0: skip).", lower_bound=0)
flags.register_validator("minutes", lambda value: value is None or (
    math.isfinite(value) and value > 0), message="--minutes must be > 0")


class _Clock:
  """An action: when each step ended, from the start of the loop."""

  def __init__(self, log_every, seconds):
    self.start = time.perf_counter()
    self.step_times = {}  # step -> seconds since the start
    self.first_step = None
    self.log_every, self.seconds = log_every, seconds

  def __call__(self, result):
    elapsed = result.time - self.start
    self.step_times[result.step] = elapsed
    if self.first_step is None:
      self.first_step = result.step
    if self.log_every and result.step % self.log_every == 0:
      print(f"step {result.step}: train bits/dim {result.bits:.4f}, lr "
            f"{result.learning_rate:.2e}, {elapsed:.0f} s of {self.seconds:.0f}",
            file=sys.stderr, flush=True)

  def steady_images_per_s(self, batch_size):
    """Images/s after the first step (which traces); NaN with one step only."""
    if len(self.step_times) < 2:
      return float("nan")
    last = max(self.step_times)
    seconds = self.step_times[last] - self.step_times[self.first_step]
    return (last - self.first_step) * batch_size / seconds if seconds > 0 else float(
        "nan")


def _budget_minutes():
  if FLAGS.minutes is not None:
    return FLAGS.minutes
  return FLAGS.train_minutes or _DEFAULT_MINUTES


def main(argv):
  del argv
  t_start = time.perf_counter()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from realnvp_tf import data  # pylint: disable=g-import-not-at-top
  from realnvp_tf import training  # pylint: disable=g-import-not-at-top
  from realnvp_tf.apps import process  # pylint: disable=g-import-not-at-top

  tf.get_logger().setLevel("ERROR")
  # As train.py does, before TensorFlow starts its threads.
  arenas_limited = process.limit_malloc_arenas()
  machine = benchlib.machine_info()
  minutes = _budget_minutes()
  if FLAGS.model_dir and os.path.isdir(FLAGS.model_dir) and os.listdir(FLAGS.model_dir):
    raise SystemExit(f"budget.py: error: --model_dir={FLAGS.model_dir} is not empty; "
                     "a budget run starts from scratch: give a new directory.")
  temporary = tempfile.mkdtemp(prefix="realnvp_budget_")
  trainer = None
  try:
    train_config = dataclasses.replace(
        cli.train_config_from_flags(), train_minutes=minutes,
        train_steps=FLAGS.max_steps or FLAGS.train_steps,
        data_dir=FLAGS.data_dir or os.path.join(temporary, "tfds"),
        export=FLAGS.export and bool(FLAGS.model_dir))
    prepare_start = time.perf_counter()
    # tfds prints its progress to stdout, which is for the JSON line alone.
    with contextlib.redirect_stdout(sys.stderr):
      model_config = cli.model_config_from_flags()
      info = training.resolve_data(train_config)
    prepare_s = time.perf_counter() - prepare_start

    trainer = training.Trainer(model_config, train_config, model_dir=(
        FLAGS.model_dir or os.path.join(temporary, "run")), dataset_info=info)
    clock = _Clock(FLAGS.log_every, minutes * 60.0)
    tail = actions.LossTracker(FLAGS.train_tail)
    stopped = trainer.train([tail, clock], progress=False)
    if (isinstance(stopped, actions.Interrupted)
        or getattr(stopped, "interrupts", False)):
      raise SystemExit("budget.py: interrupted; no figures.")
    train_seconds = max(clock.step_times.values())
    eval_start = time.perf_counter()
    metrics = trainer.finish()
    steps = metrics["step"]
    with trainer.state.averaged_weights():  # the last weights
      test = (metrics if metrics["selected_step"] == steps else
              trainer.evaluator.bits_per_dim("test"))
      train_eval = None
      if FLAGS.train_eval_images:
        train_eval = trainer.evaluator.bits_per_dim("train", FLAGS.train_eval_images)
    eval_s = time.perf_counter() - eval_start
  except (ValueError, OSError, data.DataUnavailableError,
          training.NonFiniteLossError) as e:
    raise SystemExit(messages.error_line("budget.py", e)) from None
  finally:
    if trainer is not None:
      trainer.close()
    shutil.rmtree(temporary, ignore_errors=True)

  # Each evaluation's time: the end of its step (the final one's: the end of training).
  curve = [[clock.step_times.get(step, train_seconds) / 60.0, step, value]
           for step, value in metrics["validation_history"]]
  result = {
      "benchmark": "budget",
      "dataset": train_config.dataset,
      "selected_test_bits_per_dim": metrics["bits_per_dim"],
      "selected_test_bits_per_dim_stderr": metrics["bits_per_dim_stderr"],
      "selected_step": metrics["selected_step"],
      "selected_validation_bits_per_dim": metrics["selected_validation_bits_per_dim"],
      "select": train_config.select,
      "test_bits_per_dim": test["bits_per_dim"],
      "test_bits_per_dim_stderr": test["bits_per_dim_stderr"],
      "test_images": test["num_images"],
      "last_validation_bits_per_dim": metrics["last_validation_bits_per_dim"],
      "curve": curve,
      "train_batch_bits_per_dim": tail.mean,
      "train_batch_count": len(tail.recent),
      "train_eval_bits_per_dim": train_eval["bits_per_dim"] if train_eval else None,
      "train_eval_images": train_eval["num_images"] if train_eval else 0,
      "steps": steps,
      "images_seen": steps * train_config.batch_size,
      "epochs": steps * train_config.batch_size / info.num_train,
      "nonfinite_steps": metrics["nonfinite_steps"],
      "budget_minutes": minutes,
      "max_steps": FLAGS.max_steps,
      "train_seconds": train_seconds,
      "first_step_seconds": clock.step_times[clock.first_step],
      "steady_train_images_per_s": clock.steady_images_per_s(train_config.batch_size),
      "eval_seconds": eval_s,
      "prepare_seconds": prepare_s,
      "settings": {
          "precision": model_config.compute_dtype,
          "batch_size": train_config.batch_size,
          "learning_rate": train_config.learning_rate,
          "warmup_steps": train_config.warmup_steps,
          "decay": train_config.decay,
          "decay_fraction": train_config.decay_fraction,
          "final_learning_rate": float(trainer.state.optimizer.learning_rate),
          "final_horizon": float(trainer.state.horizon.numpy()),
          "eval_every": train_config.eval_every,
          "eval_images": train_config.eval_images,
          "ema_decay": train_config.ema_decay,
          "batch_norm_momentum": model_config.batch_norm_momentum,
          "batch_norm_recalibration_batches":
              train_config.batch_norm_recalibration_batches,
          "l2_coeff": train_config.l2_coeff,
          "clip_norm": train_config.clip_norm,
          "steps_per_loop": train_config.steps_per_loop,
          "seed": train_config.seed,
      },
      "model_config": dataclasses.asdict(model_config),
      "peak_rss_mb": benchlib.peak_rss_mb(),
      "machine": machine, "malloc_arenas_limited": arenas_limited,
      "total_seconds": time.perf_counter() - t_start,
  }
  print(json.dumps(benchlib.clean_json(result), allow_nan=False), flush=True)


if __name__ == "__main__":
  benchlib.run(main)
