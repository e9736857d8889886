"""Training: a `Trainer` puts together the state, the step, the loop and its actions.

Everything `train.py` does lives in the library, so a notebook can train without the
command line:

    trainer = training.Trainer(model_config, training.TrainConfig(dataset="digits"),
                               model_dir="/tmp/run")
    metrics = trainer.fit()

The parts, each in its own module: `train_state.TrainState` (every variable),
`train_step.TrainStep` (one distributed step), `controller.Controller` (the loop) with
the `actions` between steps, `batch_norm_estimation` (statistics for the final weights)
and `run_dir` (files and checkpoints).
"""

import ctypes
import dataclasses
import json
import math
import os
import signal

from absl import logging
import keras
import tensorflow as tf

from realnvp_tf import actions as actions_lib
from realnvp_tf import batch_norm_estimation
from realnvp_tf import conditional
from realnvp_tf import controller as controller_lib
from realnvp_tf import data
from realnvp_tf import export
from realnvp_tf import run_dir as run_dir_lib
from realnvp_tf import train_state
from realnvp_tf import train_step
from realnvp_tf import validation
# Names that lived here before the split, so that old imports keep working.
from realnvp_tf.actions import NonFiniteLossError
from realnvp_tf.adam import WarmupSchedule as _WarmupSchedule  # noqa: F401
from realnvp_tf.config import TrainConfig  # noqa: F401
from realnvp_tf.run_dir import read_run_config  # noqa: F401
from realnvp_tf.run_dir import write_run_config  # noqa: F401
from realnvp_tf.train_step import Gradients  # noqa: F401

# mallopt(3) parameter number of M_ARENA_MAX in glibc's malloc.h.
_M_ARENA_MAX = -8


def make_strategy():
  """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else MirroredStrategy
  over the local GPUs (the CPU when there are none)."""
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  return tf.distribute.MirroredStrategy([d.name for d in gpus] if gpus else ["/cpu:0"])


def is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type is None or task_type == "chief" or (
      task_type == "worker" and task_id == 0)


def _is_multi_worker(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  return resolver is not None and sum(
      len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def limit_malloc_arenas(count=1):
  """Caps glibc's malloc arenas for threads started from now on; False if not glibc.

  With one arena per TensorFlow thread (glibc's default), the memory that preparing the
  training step's graph frees stays behind in arenas the activations are not allocated
  from; with one arena it is reused (the README's performance section has the
  figures). Call it before the first TensorFlow op runs.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (AttributeError, OSError):
    return False
  return mallopt(_M_ARENA_MAX, int(count)) == 1


def check_batch_size(batch_size, strategy):
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by the {replicas} replicas; use a "
        f"multiple of {replicas}.")


def _require_finite_model(flow, test_bits_per_dim, step):
  """A model that is not finite is neither recorded nor exported."""
  finite = all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in flow.variables)
  if not (finite and math.isfinite(test_bits_per_dim)):
    raise NonFiniteLossError(
        f"Training ended at step {step} with "
        + ("non-finite weights" if not finite else
           f"a non-finite test figure ({test_bits_per_dim})")
        + "; nothing was exported. Lower --learning_rate or add --warmup_steps.")


class Trainer:
  """One training run: its state, step, directory, loop and final evaluation/export.

  `fit()` = `train()` (the loop, resumed from the latest checkpoint, validating every
  `eval_every` steps) then `finish()` (batch-norm statistics for the final weights,
  checkpoint, the selected weights' test figure, metrics, export). `fit` and
  `train` take extra actions and stop conditions for the loop.
  """

  def __init__(self, model_config, train_config, model_dir, strategy=None,
               dataset_info=None):
    """`dataset_info`: the images to train on when they are not named by
    `train_config` (e.g. `data.from_tf_data(...)`, with `dataset=data.CUSTOM`)."""
    info = dataset_info or train_config.dataset_info()
    if tuple(model_config.image_shape) != tuple(info.image_shape) or (
        model_config.num_levels != info.num_levels):
      raise ValueError(
          f"Dataset {info.name} has images of shape {info.image_shape} with "
          f"{info.num_levels} levels, but the model config says "
          f"{model_config.image_shape} with {model_config.num_levels}.")
    self.class_counts = _class_counts(model_config, train_config, info)
    self.model_config, self.config, self.info = model_config, train_config, info
    self.strategy = strategy or make_strategy()
    check_batch_size(train_config.batch_size, self.strategy)
    self.run_dir = run_dir_lib.RunDirectory(model_dir, is_chief(self.strategy))
    # Before the model is built: bad directories and mismatched settings fail at once.
    self.run_dir.check_resumable(model_config, train_config)
    self.run_dir.open_for_writing()
    self.state = train_state.TrainState(model_config, train_config, self.strategy)
    self.step_fn = train_step.TrainStep(self.state, model_config, train_config,
                                        self.strategy)
    self.manager = run_dir_lib.make_manager(self.state.checkpoint, self.run_dir)
    self._writers = {}
    self._loss = actions_lib.LossTracker()
    self.validation = validation.RunEvaluation(
        info, train_config, self.state, self.run_dir, self.writer,
        reestimate=lambda: self.recalibrate_batch_norm(
            train_config.batch_norm_recalibration_batches),
        log_prior=conditional.log_prior(self.class_counts, model_config.num_classes)
        if model_config.conditional else None)

  # The state's parts, by the names the trainer has always had.
  flow = property(lambda self: self.state.flow)
  variables = property(lambda self: self.state.variables)
  optimizer = property(lambda self: self.state.optimizer.optimizer)
  step = property(lambda self: self.state.step)
  ema = property(lambda self: self.state.ema)
  nonfinite_streak = property(lambda self: self.state.nonfinite_streak)
  nonfinite_total = property(lambda self: self.state.nonfinite_total)
  checkpoint = property(lambda self: self.state.checkpoint)

  def train_step(self, iterator):
    """One optimizer step on the next batch of a distributed iterator: returns (bits/dim
    of the batch, gradient norm, whether the update was applied)."""
    return self.step_fn(iterator)

  def compute_gradients(self, images):
    return self.step_fn.compute_gradients(images)

  def averaged_weights(self):
    """Context manager: the EMA weights in place of the raw ones (if EMA is on)."""
    return self.state.averaged_weights()

  def restore(self):
    """Restores the newest checkpoint of the run that restores (see
    `run_dir.restore_newest`), if any; returns its step."""
    restored = run_dir_lib.restore_newest(
        self.checkpoint, os.path.join(self.run_dir.path, run_dir_lib.CHECKPOINT_DIR))
    if restored:
      logging.info("Resumed from %s at step %d.", restored, int(self.step.numpy()))
    return int(self.step.numpy())

  def data_seed(self, step):
    """The seed of the training stream of the epoch that `step` falls in: a resumed
    run starts its epoch afresh, with that epoch's own shuffle and noise."""
    steps_per_epoch = max(1, self.info.num_train // self.config.batch_size)
    return self.config.seed * 1_000_003 + step // steps_per_epoch

  def train_dataset(self, start_step):
    """The distributed training stream from `start_step` on."""
    return data.make_distributed_dataset(
        self.strategy, self.info, "train",
        global_batch_size=self.config.batch_size, training=True,
        data_dir=self.config.data_dir, manual_dir=self.config.manual_dir,
        seed=self.data_seed(start_step), labels=self.model_config.conditional)

  def eval_dataset(self, max_images=None, split="test"):
    """`split` in evaluation order with seeded noise (`max_images` of it)."""
    return self.validation.dataset(split, max_images)

  def writer(self, name):
    """The TensorBoard writer of `name` ("train", "validation", "test")."""
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(self.run_dir.log_dir(name))
    return self._writers[name]

  def default_actions(self, start, progress=True):
    cfg = self.config
    bar = keras.utils.Progbar(
        cfg.train_steps, stateful_metrics=["bits/dim", "images/s", "val bits/dim"],
        verbose=1 if (progress and self.run_dir.is_chief) else 0)
    self.validation.progress_bar = bool(bar.verbose)
    return [
        actions_lib.NonFiniteGuard(self.nonfinite_streak, cfg.max_nonfinite_steps,
                                   self.manager.directory),
        actions_lib.TrainSummaries(self.writer("train"), self.state, cfg.batch_size,
                                   cfg.log_every, cfg.train_steps),
        actions_lib.ShowProgress(bar, cfg.batch_size, cfg.log_every, cfg.train_steps,
                                 start, lambda: self.validation.latest),
        actions_lib.SaveCheckpoint(self.manager, cfg.checkpoint_every),
        actions_lib.PeriodicEvaluation(lambda step: self.validation.validate(),
                                       cfg.eval_every, cfg.train_steps),
    ]

  def train(self, actions=(), stop_conditions=(), progress=True):
    """The loop from the latest checkpoint to `train_steps`, with the default actions
    and `actions` after each step. Returns None when the step count was reached, or
    what ended it early: a stop condition, or an `actions.Interrupted` (a checkpoint
    is saved when training is interrupted: a signal, a preemption)."""
    start = self.restore()
    self.run_dir.write_config(self.model_config, self.config)
    self._loss = actions_lib.LossTracker()
    extra, signals = [], (signal.SIGTERM, signal.SIGINT)
    if _is_multi_worker(self.strategy):
      # SIGTERM to any worker: every worker saves at the same step.
      extra.append(actions_lib.SaveCheckpointIfPreempted(
          self.strategy.cluster_resolver, self.manager))
      signals = (signal.SIGINT,)
    with actions_lib.SignalStop(signals) as signal_stop:
      loop = controller_lib.Controller(
          self.train_step, self.step,
          self.default_actions(start, progress) + extra + [self._loss, *actions],
          [signal_stop, *stop_conditions])
      try:
        stopped = loop.run(iter(self.train_dataset(start)), self.config.train_steps)
      except actions_lib.Interrupted as interruption:
        logging.warning("%s", interruption)
        return interruption
    if getattr(stopped, "interrupts", False):
      step = int(self.step.numpy())
      self.manager.save(checkpoint_number=step)
      logging.warning("%s: checkpoint saved at step %d; stopping.",
                      getattr(stopped, "reason", type(stopped).__name__), step)
    return stopped

  def finish(self):
    """After the loop: batch-norm statistics for the final weights and a checkpoint of
    them; their validation figure (a candidate for the best); then, with the weights
    `select` names, the test figure (the test split's one reading), metrics.json
    and the export. Returns the metrics."""
    step = int(self.step.numpy())
    with self.averaged_weights():
      recalibrated = self.recalibrate_batch_norm(
          self.config.batch_norm_recalibration_batches)
    if recalibrated or self.manager.latest_checkpoint != os.path.join(
        self.manager.directory, f"ckpt-{step}"):
      self.manager.save(checkpoint_number=step)
    last = self.validation.validate(statistics_ready=True)
    last_value = last["bits_per_dim"] if last else None
    with self.validation.selected_weights(self.config.select, last_value) as chosen:
      result = self.validation.evaluate("test")
      _require_finite_model(self.flow, result["bits_per_dim"], step)
      reference = self.validation.typicality_reference()
      result.update(
          step=step, select=self.config.select, selected_step=chosen[0],
          selected_validation_bits_per_dim=chosen[1],
          last_validation_bits_per_dim=last_value,
          validation_history=self.validation.history,
          train_bits_per_dim=self._loss.last,
          nonfinite_steps=int(self.nonfinite_total.numpy()),
          dataset=self.config.dataset, data=self.config.data_spec(),
          model_config=dataclasses.asdict(self.model_config),
          typicality_reference=reference, **self.class_metadata())
      self.run_dir.write_metrics(result)
      if self.config.export:
        export.export_saved_model(self.flow, self.run_dir.export_dir, metadata={
            "dataset": self.config.dataset, "data": self.config.data_spec(),
            "step": chosen[0], "typicality_reference": reference,
            **self.class_metadata()})
    return result

  def class_metadata(self):
    """A class-conditional run's classes for metrics.json and the export: the
    training split's label counts (the classifier's prior) and the class names."""
    if self.class_counts is None:
      return {}
    return {"class_counts": [int(c) for c in self.class_counts],
            "class_names": list(self.info.class_names)}

  def fit(self, progress=True, actions=(), stop_conditions=()):
    """Trains up to `train_steps`, then `finish()`es. Returns the final metrics (also in
    model_dir/metrics.json), or None when a signal stopped training."""
    try:
      stopped = self.train(actions, stop_conditions, progress)
      if isinstance(stopped, actions_lib.Interrupted) or getattr(
          stopped, "interrupts", False):
        return None
      return self.finish()
    finally:
      self.close()

  def close(self):
    for writer in self._writers.values():
      writer.close()
    self._writers = {}
    self.run_dir.close()

  def recalibrate_batch_norm(self, num_batches):
    """Re-estimates every batch norm's statistics on `num_batches` training batches for
    the current weights (see `batch_norm_estimation`). Returns the batches used."""
    if num_batches <= 0:
      return 0
    iterator = iter(self.train_dataset(int(self.step.numpy())))
    return batch_norm_estimation.reestimate_batch_norm(self.flow, self.strategy,
                                                       iterator, num_batches)


def _class_counts(model_config, train_config, info):
  """The training split's label counts of a class-conditional run (None for an
  unconditional one); refuses data without labels or with other classes."""
  if not model_config.conditional:
    return None
  data.require_labels(info, model_config.num_classes)
  return data.label_counts(info, "train", train_config.data_dir,
                           train_config.manual_dir)


def summary(metrics):
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
  return "\n".join(lines)


__all__ = ["Trainer", "TrainConfig", "NonFiniteLossError", "make_strategy",
           "limit_malloc_arenas", "check_batch_size", "is_chief", "summary"]
