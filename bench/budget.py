"""Quality at equal budget: train the bench config for N minutes, then test bits/dim.

Trains issue 6's bench config (2 scales, 4 residual blocks, 32 filters, batch 64) on
real MNIST through `training.Trainer` (its data pipeline and its distributed step:
training-mode batch norm, L2, clipping, Adam, EMA, skipped non-finite steps) for
--minutes of wall clock, re-estimates the batch-norm statistics for the final weights
as `Trainer.fit` does (--batch_norm_recalibration_batches; not counted in the budget),
then evaluates with `evaluation.evaluate_bits_per_dim`, in inference mode (EMA weights
when --ema_decay > 0), on all 10,000 test images. Side by side it reports the
training batches' own bits/dim (the training loss without L2, batch statistics, raw
weights; mean of the last --train_tail finite steps) and, on --train_eval_images
training images, the same inference-mode figure as the test one, so a gap between
training and evaluation modes shows apart from overfitting; the latter also before
the re-estimation (`train_eval_bits_per_dim_moving_averages`).

The clock starts just before the training iterator is created (data preparation from
--manual_dir is done before and not counted; the first step's tracing is counted) and
stops after the first step that ends past the deadline (or at --max_steps). The loop
is `Trainer.fit`'s without its checkpoints, TensorBoard scalars and periodic
evaluations.

Prints one JSON line; progress goes to stderr. Usage:

  python bench/budget.py --minutes=20 --manual_dir=../shared/data/mnist
  python bench/budget.py --minutes=0.1 --max_steps=10 --dataset=digits   # smoke
"""

import collections
import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts the repository on sys.path)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from realnvp_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
_BENCH = benchlib.CONFIGS["bench"]

cli.define_optimization_flags()
flags.adopt_module_key_flags(cli)

flags.DEFINE_float("minutes", 20.0, "Wall-clock training budget in minutes.")
flags.DEFINE_integer("max_steps", 0, "Stop after this many steps even within the "
                     "budget (0: no cap; for smoke tests).")
flags.DEFINE_enum("dataset", "mnist", ["mnist", "fashion_mnist", "digits"],
                  "Dataset (digits: the embedded 8x8 set, no files needed).")
flags.DEFINE_string("manual_dir", None, "Folder with the official raw files, e.g. "
                    "../shared/data/mnist.")
flags.DEFINE_string("data_dir", None, "tfds data directory (default: a temporary "
                    "directory, removed at the end; the preparation is not timed).")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "bfloat16"],
                  "Precision of the s/t networks (an error while the config has no "
                  "precision field).")
# The model: the bench config by default.
flags.DEFINE_integer("num_scales", _BENCH["num_scales"], "Scales.")
flags.DEFINE_integer("num_res_blocks", _BENCH["num_res_blocks"], "Residual blocks per "
                     "s/t network.")
flags.DEFINE_integer("num_filters", _BENCH["num_filters"], "s/t feature maps at the "
                     "finest scale.")
flags.DEFINE_float("batch_norm_momentum", 0.9, "Momentum of the batch-norm moving "
                   "averages (flow and networks).")
# Reporting.
flags.DEFINE_integer("eval_batch_size", 256, "Evaluation batch size.")
flags.DEFINE_integer("train_tail", 50, "Training batches averaged for the train-batch "
                     "bits/dim.")
flags.DEFINE_integer("train_eval_images", 2000, "Training images evaluated in "
                     "inference mode, like the test set (0: skip).")
flags.DEFINE_integer("log_every", 100, "Steps between progress lines on stderr.")


def _trainer_class():
  from realnvp_tf import training  # pylint: disable=g-import-not-at-top

  class BudgetTrainer(training.Trainer):
    """A Trainer whose loop stops on a wall-clock deadline."""

    def train_for(self, seconds, max_steps, tail, log_every):
      """Trains from the current step until `seconds` have passed (or `max_steps`).

      Returns a dict of what happened.
      """
      recent = collections.deque(maxlen=tail)
      start = time.perf_counter()
      deadline = start + seconds
      iterator = iter(self.train_dataset(int(self.step.numpy())))
      first_step_s = None
      step = int(self.step.numpy())
      while True:
        bits, _, finite = self.train_step(iterator)
        step = int(self.step.numpy())
        now = time.perf_counter()
        if first_step_s is None:
          first_step_s, after_first = now - start, now
        if bool(finite):
          recent.append(float(bits))
        elif int(self.nonfinite_streak.numpy()) >= self.config.max_nonfinite_steps:
          raise training.NonFiniteLossError(
              f"{int(self.nonfinite_streak.numpy())} consecutive non-finite steps "
              f"(last at step {step}); stopped.")
        if log_every and step % log_every == 0:
          print(f"step {step}: train bits/dim {float(bits):.4f}, "
                f"{now - start:.0f} s of {seconds:.0f}", file=sys.stderr, flush=True)
        if now >= deadline or (max_steps and step >= max_steps):
          break
      end = time.perf_counter()
      steady = step - 1
      return dict(
          steps=step, train_seconds=end - start, first_step_seconds=first_step_s,
          steady_images_per_s=(steady * self.config.batch_size / (end - after_first)
                               if steady > 0 and end > after_first else float("nan")),
          train_batch_bits_per_dim=(sum(recent) / len(recent) if recent
                                    else float("nan")),
          train_batch_count=len(recent),
          nonfinite_steps=int(self.nonfinite_total.numpy()),
          final_learning_rate=float(self.optimizer.learning_rate))

  return BudgetTrainer


def main(argv):
  del argv
  t_start = time.perf_counter()
  from realnvp_tf.config import RealNVPConfig  # pylint: disable=g-import-not-at-top
  overrides = benchlib.precision_overrides(RealNVPConfig, FLAGS.mixed_precision)
  if FLAGS.minutes <= 0 or FLAGS.max_steps < 0 or FLAGS.train_tail < 1:
    raise app.UsageError("--minutes must be > 0, --max_steps >= 0, --train_tail >= 1.")

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realnvp_tf import data  # pylint: disable=g-import-not-at-top
  from realnvp_tf import evaluation  # pylint: disable=g-import-not-at-top
  from realnvp_tf import training  # pylint: disable=g-import-not-at-top

  tf.get_logger().setLevel("ERROR")
  # As train.py does, before TensorFlow starts its threads.
  arenas_limited = training.limit_malloc_arenas()
  machine = benchlib.machine_info()
  info = data.get_dataset_info(FLAGS.dataset)
  model_config = RealNVPConfig(
      image_shape=info.image_shape, num_levels=info.num_levels,
      num_scales=FLAGS.num_scales, num_res_blocks=FLAGS.num_res_blocks,
      num_filters=FLAGS.num_filters, batch_norm_momentum=FLAGS.batch_norm_momentum,
      **overrides)

  temporary = tempfile.mkdtemp(prefix="realnvp_budget_")
  data_dir = FLAGS.data_dir or os.path.join(temporary, "tfds")
  try:
    train_config = training.TrainConfig(
        dataset=FLAGS.dataset, batch_size=FLAGS.batch_size, train_steps=10**9,
        learning_rate=FLAGS.learning_rate, warmup_steps=FLAGS.warmup_steps,
        l2_coeff=FLAGS.l2_coeff, clip_norm=FLAGS.clip_norm, ema_decay=FLAGS.ema_decay,
        eval_every=0, eval_batch_size=FLAGS.eval_batch_size,
        max_nonfinite_steps=FLAGS.max_nonfinite_steps, seed=FLAGS.seed,
        batch_norm_recalibration_batches=FLAGS.batch_norm_recalibration_batches,
        data_dir=data_dir, manual_dir=FLAGS.manual_dir, export=False)
    prepare_start = time.perf_counter()
    if info.tfds_name is not None:
      # tfds prints its progress to stdout, which is for the JSON line alone.
      with contextlib.redirect_stdout(sys.stderr):
        data.prepare_dataset(FLAGS.dataset, data_dir=data_dir,
                             manual_dir=FLAGS.manual_dir)
    prepare_s = time.perf_counter() - prepare_start

    trainer = _trainer_class()(model_config, train_config,
                               model_dir=os.path.join(temporary, "run"))
    run = trainer.train_for(FLAGS.minutes * 60.0, FLAGS.max_steps, FLAGS.train_tail,
                            FLAGS.log_every)

    eval_start = time.perf_counter()
    with trainer.averaged_weights():
      train_eval = train_eval_moving = None
      if FLAGS.train_eval_images:
        batches = math.ceil(FLAGS.train_eval_images / FLAGS.eval_batch_size)
        train_images = data.make_dataset(
            FLAGS.dataset, "train", batch_size=FLAGS.eval_batch_size, training=False,
            data_dir=data_dir, manual_dir=FLAGS.manual_dir, seed=FLAGS.seed)
        score_train_images = lambda: evaluation.evaluate_bits_per_dim(
            trainer.flow.log_prob, train_images.take(batches), info.image_shape)
        # Before the re-estimation: what the moving averages alone would give.
        train_eval_moving = score_train_images()
      recalibration_start = time.perf_counter()
      recalibrated = trainer.recalibrate_batch_norm(
          FLAGS.batch_norm_recalibration_batches)
      recalibration_s = time.perf_counter() - recalibration_start
      test = evaluation.evaluate_bits_per_dim(
          trainer.flow.log_prob, trainer.eval_dataset(), info.image_shape)
      if FLAGS.train_eval_images:
        train_eval = score_train_images()
    eval_s = time.perf_counter() - eval_start
  except (ValueError, data.DataUnavailableError, training.NonFiniteLossError) as e:
    raise SystemExit(f"budget.py: error: {e}")
  finally:
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
