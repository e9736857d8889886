"""The state of a training run: every variable it creates, and its checkpoint."""

import contextlib

import keras
import tensorflow as tf

from realnvp_tf.model import flow as flow_lib
from realnvp_tf.runs import checkpoints
from realnvp_tf.training import adam
from realnvp_tf.training import loss_scale as loss_scale_lib
from realnvp_tf.training import schedule
from realnvp_tf.training import weights


class TrainState:
  """The flow, Adam and its slots, the step, the skipped-step counts and the EMA.

  Everything is created inside `strategy.scope()`, so that a strategy mirrors it, and
  `checkpoint` holds all of it.

  Attributes:
    flow: the `tfd.TransformedDistribution` being trained.
    variables: its trainable variables (the order of gradients and slots).
    statistics: its batch-norm moving statistics.
    optimizer: a `adam.FusedAdam` over `variables`, its learning rate a
      `schedule.WarmupDecay`.
    horizon: the step the learning-rate decay ends at (`train_steps`, or what a time
      budget allows).
    step: steps taken, skipped ones included.
    nonfinite_streak, nonfinite_total: consecutive and total skipped steps.
    ema: Polyak averages of `variables` (None when `ema_decay` is 0).
    loss_scale: a `loss_scale.DynamicLossScale` when the s/t networks compute in
      float16, else None.
  """

  def __init__(self, model_config, train_config, strategy):
    with strategy.scope():
      self.flow = flow_lib.build_realnvp(model_config)
      self.variables = list(self.flow.trainable_variables)
      self.statistics = list(self.flow.non_trainable_variables)
      # Not checkpointed: set from the config (or a time budget) by each process.
      self.horizon = tf.Variable(float(train_config.train_steps), trainable=False,
                                 name="schedule_horizon")
      self.optimizer = adam.FusedAdam(keras.optimizers.Adam(schedule.WarmupDecay(
          train_config.learning_rate, train_config.warmup_steps, train_config.decay,
          self.horizon, train_config.decay_fraction)), self.variables)

      def counter(name):
        return tf.Variable(0, dtype=tf.int64, trainable=False, name=name)

      self.step = counter("step")
      self.nonfinite_streak = counter("nonfinite_streak")
      self.nonfinite_total = counter("nonfinite_total")
      self.ema = None
      if train_config.ema_decay:
        self.ema = [tf.Variable(v, trainable=False, name=v.name.split(":")[0] + "_ema")
                    for v in self.variables]
      self.loss_scale = None
      if model_config.compute_dtype == "float16":
        self.loss_scale = loss_scale_lib.DynamicLossScale(
            train_config.initial_loss_scale, train_config.loss_scale_growth_steps)
    parts = dict(optimizer=self.optimizer.optimizer,
                 nonfinite_total=self.nonfinite_total, ema=self.ema)
    self.checkpoint = checkpoints.make_checkpoint(
        self.flow, self.step, loss_scale=self.loss_scale, **parts)
    self._checkpoint_without_loss_scale = checkpoints.make_checkpoint(
        self.flow, self.step, **parts)

  def checkpoint_for(self, path):
    """The checkpoint object to restore `path` with: a float16 run resumed from a
    checkpoint of another precision has no loss scale to restore, and starts from
    the initial one."""
    if self.loss_scale is None or any(
        name.startswith("loss_scale/") for name, _ in tf.train.list_variables(path)):
      return self.checkpoint
    return self._checkpoint_without_loss_scale

  def update_ema(self, decay):
    if self.ema is None:  # EMA off
      return
    for average, variable in zip(self.ema, self.variables, strict=True):
      average.assign(decay * average + (1.0 - decay) * variable)

  def averaged_weights(self):
    """Context manager: the EMA weights in place of the raw ones (if EMA is on), the
    raw ones put back on exit."""
    if self.ema is None:
      return contextlib.nullcontext()
    return weights.swapped(self.variables, self.ema)
