"""`Trainer`: a training run's state, step, directory, loop and actions put together.

Everything `train.py` does lives in the library, so a notebook can train without the
command line:

    trainer = training.Trainer(model_config, training.TrainConfig(dataset="digits"),
                               model_dir="/tmp/run")
    metrics = trainer.fit()

The parts, each in its own module of this package: `state.TrainState` (every
variable), `step.TrainStep` (one distributed step), `controller.Controller` (the
loop) with the `actions` between steps, `evaluator.Evaluator` (the figures),
`selection` (validation and the weights kept), `closing` (the steps of the run's
end), `batch_norm_estimation` (statistics for the final weights), `strategies` and
`resume`; `realnvp_tf.runs` holds the files and checkpoints.
"""

import os
import signal

from absl import logging
import keras
import tensorflow as tf

from realnvp_tf import data
from realnvp_tf.model import conditional
from realnvp_tf.runs import best
from realnvp_tf.runs import checkpoints
from realnvp_tf.runs import directory
from realnvp_tf.training import actions as actions_lib
from realnvp_tf.training import batch_norm_estimation
from realnvp_tf.training import closing
from realnvp_tf.training import controller as controller_lib
from realnvp_tf.training import evaluator as evaluator_lib
from realnvp_tf.training import resume
from realnvp_tf.training import selection
from realnvp_tf.training import state as state_lib
from realnvp_tf.training import step as step_lib
from realnvp_tf.training import strategies


def resolve_data(train_config):
  """The `data.DatasetInfo` of the images `train_config` names (`data.resolve`: a
  folder is decoded and a tfds set prepared, once per process)."""
  return data.resolve(train_config.data_spec(), train_config.data_dir,
                      train_config.manual_dir, train_config.fail_on_bad_images,
                      min_train_images=train_config.batch_size)


class Trainer:
  """One training run: its state, step, directory, loop and final evaluation/export.

  `fit()` = `train()` (the loop, resumed from the latest checkpoint, validating every
  `eval_every` steps) then `finish()` (the `closing_steps`: batch-norm statistics for
  the final weights, checkpoint, the selected weights' test figure, metrics, export).
  `fit` and `train` take extra actions and stop conditions for the loop; `fit` and
  `finish` take extra closing steps.
  """

  def __init__(self, model_config, train_config, model_dir, strategy=None,
               dataset_info=None):
    """`dataset_info`: the images to train on when they are not named by
    `train_config` (e.g. `data.from_tf_data(...)`, with `dataset=data.CUSTOM`)."""
    info = (dataset_info.located(train_config.data_dir, train_config.manual_dir)
            if dataset_info else resolve_data(train_config))
    data.require_image_format(info, model_config.image_shape, model_config.num_levels)
    self.class_counts = _class_counts(model_config, info)
    self.model_config, self.config, self.info = model_config, train_config, info
    self.strategy = strategy or strategies.make_strategy()
    strategies.check_batch_size(train_config.batch_size, self.strategy)
    if train_config.train_minutes and strategies.is_multi_worker(self.strategy):
      raise ValueError("train_minutes works on one host only: each worker's clock "
                       "would stop it at another step. Use train_steps across hosts.")
    self.run_dir = directory.RunDirectory(model_dir,
                                          strategies.is_chief(self.strategy))
    # Before the model is built: bad directories and mismatched settings fail at once.
    self.data_fingerprint = data.fingerprint(info)
    resume.check_resumable(self.run_dir, model_config, train_config,
                           self.data_fingerprint)
    self.run_dir.open_for_writing()
    if train_config.deterministic:
      _make_deterministic(train_config.seed)
    self.state = state_lib.TrainState(model_config, train_config, self.strategy)
    self.step_fn = step_lib.TrainStep(self.state, model_config, train_config,
                                      self.strategy)
    self.manager = checkpoints.make_manager(self.state.checkpoint,
                                            self.run_dir.checkpoint_dir)
    self._writers = {}
    self.loss_tracker = actions_lib.LossTracker()
    self._estimate_statistics = batch_norm_estimation.BatchNormEstimator(
        self.state.flow, self.strategy)
    self.evaluator = evaluator_lib.Evaluator(
        info, train_config, self.state.flow,
        log_prior=conditional.log_prior(self.class_counts, model_config.num_classes)
        if model_config.conditional else None)
    self.best = best.BestCheckpoint(self.run_dir, self.state.flow)
    self.keep_best = selection.KeepBestWeights(self.best)
    self.validation = selection.Validation(
        self.evaluator, self.state, self.writer, [self.keep_best],
        reestimate=lambda: self.recalibrate_batch_norm(
            train_config.batch_norm_recalibration_batches))

  def restore(self):
    """Restores the newest checkpoint of the run that restores (see
    `runs.checkpoints.restore_newest`), if any; returns its step."""
    restored = checkpoints.restore_newest(
        self.state.checkpoint_for,
        os.path.join(self.run_dir.path, directory.CHECKPOINT_DIR))
    step = int(self.state.step.numpy())
    if restored:
      logging.info("Resumed from %s at step %d.", restored, step)
    return step

  def data_seed(self, step):
    """The seed of the training stream of the epoch that `step` falls in: a resumed
    run starts its epoch afresh, with that epoch's own shuffle and noise."""
    steps_per_epoch = max(1, self.info.num_train // self.config.batch_size)
    return data.derived_seed(self.config.seed, step // steps_per_epoch)

  def train_dataset(self, start_step):
    """The distributed training stream from `start_step` on."""
    return data.make_distributed_dataset(
        self.strategy, self.info, "train",
        global_batch_size=self.config.batch_size, training=True,
        seed=self.data_seed(start_step), labels=self.model_config.conditional)

  def writer(self, name):
    """The TensorBoard writer of `name` ("train", "validation", "test")."""
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(self.run_dir.log_dir(name))
    return self._writers[name]

  def default_actions(self, start, progress=True):
    cfg = self.config
    # A time budget's run ends at a step no one knows yet: no target, no ETA.
    bar = keras.utils.Progbar(
        None if cfg.train_minutes else cfg.train_steps,
        stateful_metrics=["bits/dim", "images/s", "val bits/dim"],
        verbose=1 if (progress and self.run_dir.is_chief) else 0)
    self.validation.quiet = self.keep_best.quiet = bool(bar.verbose)
    return [
        actions_lib.NonFiniteGuard(self.state.nonfinite_streak, cfg.max_nonfinite_steps,
                                   self.manager.directory),
        actions_lib.TrainSummaries(self.writer("train"), self.state, cfg.batch_size,
                                   cfg.log_every, cfg.train_steps,
                                   loss_scaling=self.state.loss_scale is not None),
        actions_lib.ShowProgress(bar, cfg.batch_size, cfg.log_every, cfg.train_steps,
                                 start, lambda: self.validation.latest),
        actions_lib.SaveCheckpoint(self.manager, cfg.checkpoint_every),
        actions_lib.PeriodicEvaluation(lambda step: self.validation(),
                                       cfg.eval_every, cfg.train_steps),
    ]

  def train(self, actions=(), stop_conditions=(), progress=True):
    """The loop from the latest checkpoint to `train_steps` (or to the end of
    `train_minutes`), with the default actions and `actions` after each step.
    Returns None when the step count was reached, or
    what ended it early: a stop condition, or an `actions.Interrupted` (a checkpoint
    is saved when training is interrupted: a signal, a preemption)."""
    start = self.restore()
    self.run_dir.write_config(self.model_config, self.config, self.data_fingerprint)
    self.loss_tracker = actions_lib.LossTracker()
    extra, signals = [], (signal.SIGTERM, signal.SIGINT)
    budget = []
    if self.config.train_minutes:  # the clock starts here, the first step's tracing in
      budget.append(actions_lib.TimeBudget(self.config.train_minutes * 60.0))
      extra.append(actions_lib.BudgetHorizon(budget[0], self.state.horizon,
                                             self.config.train_steps))
    if strategies.is_multi_worker(self.strategy):
      # SIGTERM to any worker: every worker saves at the same step.
      extra.append(actions_lib.SaveCheckpointIfPreempted(
          self.strategy.cluster_resolver, self.manager))
      signals = (signal.SIGINT,)
    with actions_lib.SignalStop(signals) as signal_stop:
      loop = controller_lib.Controller(
          self.step_fn, self.state.step,
          self.default_actions(start, progress) + extra + [self.loss_tracker, *actions],
          [signal_stop, *budget, *stop_conditions],
          steps_per_loop=self.config.steps_per_loop)
      try:
        stopped = loop.run(iter(self.train_dataset(start)), self.config.train_steps)
      except actions_lib.Interrupted as interruption:
        logging.warning("%s", interruption)
        return interruption
    if getattr(stopped, "interrupts", False):
      step = int(self.state.step.numpy())
      self.manager.save(checkpoint_number=step)
      logging.warning("%s: checkpoint saved at step %d; stopping.",
                      getattr(stopped, "reason", type(stopped).__name__), step)
    return stopped

  def closing_steps(self, extra=()):
    """The steps of the run's end (see `closing`), `extra` among those that run with
    the selected weights, before the metrics are written."""
    with_selected = [closing.TestFigure()]
    if self.model_config.conditional:
      with_selected.append(closing.ClassifierFigure())
    with_selected += [closing.RequireFinite(), closing.TypicalityReference(),
                      closing.RunRecord(), *extra, closing.WriteMetrics()]
    if self.config.export:
      with_selected.append(closing.Export())
    return [closing.ReestimateBatchNorm(self.config.batch_norm_recalibration_batches),
            closing.ValidateLastWeights(),
            closing.WithSelectedWeights(self.config.select, with_selected)]

  def finish(self, closing_steps=()):
    """After the loop: `closing_steps()` with `closing_steps` of your own. Returns the
    metrics (also in model_dir/metrics.json)."""
    end = closing.RunEnd(self, int(self.state.step.numpy()))
    for step in self.closing_steps(closing_steps):
      step(end)
    return end.metrics

  def class_metadata(self):
    """A class-conditional run's classes for metrics.json and the export: the
    training split's label counts (the classifier's prior) and the class names."""
    if self.class_counts is None:
      return {}
    return {"class_counts": [int(c) for c in self.class_counts],
            "class_names": list(self.info.class_names)}

  def fit(self, progress=True, actions=(), stop_conditions=(), closing_steps=()):
    """Trains up to `train_steps`, then `finish(closing_steps)`es. Returns the final
    metrics (also in model_dir/metrics.json), or None when a signal stopped
    training."""
    try:
      stopped = self.train(actions, stop_conditions, progress)
      if isinstance(stopped, actions_lib.Interrupted) or getattr(
          stopped, "interrupts", False):
        return None
      return self.finish(closing_steps)
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
    iterator = iter(self.train_dataset(int(self.state.step.numpy())))
    return self._estimate_statistics(iterator, num_batches)


def _make_deterministic(seed):
  """Seeded initial weights and TensorFlow's deterministic kernels, for this process
  (the data pipelines are seeded and stateless already)."""
  keras.utils.set_random_seed(seed)
  tf.config.experimental.enable_op_determinism()


def _class_counts(model_config, info):
  """The training split's label counts of a class-conditional run (None for an
  unconditional one); refuses data without labels or with other classes."""
  if not model_config.conditional:
    return None
  data.require_labels(info, model_config.num_classes)
  return data.label_counts(info, "train")
