"""One training step: the paper's loss, its gradients over replicas, clipping, Adam."""

from typing import NamedTuple

import tensorflow as tf

from realnvp_tf.model import flow as flow_lib


class Gradients(NamedTuple):
  """What `TrainStep.compute_gradients` returns (all-reduced over the replicas)."""
  bits: tf.Tensor  # the global batch's mean bits/dim (no L2)
  gradients: list  # of bits/dim + L2, in the order of TrainState.variables
  grad_norm: tf.Tensor  # their global norm, before clipping
  clipped_gradients: list  # clipped to TrainConfig.clip_norm


class StepOutput(NamedTuple):
  bits: tf.Tensor  # the batch's mean bits/dim
  grad_norm: tf.Tensor  # global gradient norm before clipping
  finite: tf.Tensor  # whether the update was applied


class TrainStep:
  """A `tf.function` step of a `TrainState` on the next batch of a distributed iterator.

  Per replica: bits/dim of its images in training mode (batch norm on the global
  batch's statistics), plus the L2 penalty on the weight scales; each replica's loss
  is its share of the global batch's, so the gradients summed over the replicas are
  the global batch's gradient. They are clipped by their global norm and applied by
  Adam. A class-conditional flow's batches are (images, labels), its loss
  -log p(x | y). A step whose loss or gradient norm is not finite changes nothing but the step
  and skip counters: weights, Adam's slots, the EMA and the batch-norm statistics stay
  as they were.
  """

  def __init__(self, state, model_config, train_config, strategy):
    self.state = state
    self.strategy = strategy
    self.config = train_config
    self._image_shape = model_config.image_shape
    self._conditional = model_config.conditional
    self._l2_variables = flow_lib.weight_scale_variables(state.flow)
    self._step = tf.function(self._distributed_step)

  def __call__(self, iterator):
    """Returns a `StepOutput` of tensors (as the first replica holds them)."""
    return self._step(iterator)

  def compute_gradients(self, batch):
    """This replica's gradients, summed over replicas (call inside `strategy.run`).

    `batch`: images, or (images, labels) for a class-conditional flow. Training mode:
    the batch norms update their moving averages.
    """
    images, labels = batch if self._conditional else (batch, None)
    context = tf.distribute.get_replica_context()
    with tf.GradientTape() as tape:
      log_prob = flow_lib.log_prob(self.state.flow, images, labels, training=True)
      bits = flow_lib.bits_per_dim(tf.reduce_sum(log_prob),
                                   self._image_shape) / self.config.batch_size
      l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_variables])
      loss = bits + self.config.l2_coeff * l2 / context.num_replicas_in_sync
    gradients = tape.gradient(loss, self.state.variables)
    # Summed here, not by the optimizer, so that clipping sees the global gradient.
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    bits = context.all_reduce(tf.distribute.ReduceOp.SUM, bits)
    clipped, grad_norm = tf.clip_by_global_norm(gradients, self.config.clip_norm)
    return Gradients(bits, gradients, grad_norm, clipped)

  def _distributed_step(self, iterator):
    out = self.strategy.run(self._replica_step, args=(next(iterator),))
    first = lambda value: self.strategy.experimental_local_results(value)[0]
    return StepOutput(*(first(value) for value in out))

  def _replica_step(self, batch):
    # The training-mode pass updates the moving statistics; a skipped step puts them
    # back.
    statistics = [tf.identity(v) for v in self.state.statistics]
    out = self.compute_gradients(batch)
    finite = tf.logical_and(tf.math.is_finite(out.grad_norm),
                            tf.math.is_finite(out.bits))
    tf.distribute.get_replica_context().merge_call(
        self._apply_if_finite, args=(out.clipped_gradients, statistics, finite))
    return out.bits, out.grad_norm, finite

  def _apply_if_finite(self, strategy, gradients, statistics, finite):
    # Cross-replica context, where a tf.cond may hold the updates (in replica context
    # it may not hold a synchronisation point).
    finite = strategy.experimental_local_results(finite)[0]
    state = self.state

    def apply():
      state.optimizer.apply(strategy, gradients)
      state.update_ema(self.config.ema_decay)
      state.nonfinite_streak.assign(0)
      return tf.constant(True)

    def skip():
      for variable, value in zip(state.statistics, statistics):
        strategy.extended.update(variable, lambda var, val: var.assign(val),
                                 args=(value,), group=False)
      state.nonfinite_streak.assign_add(1)
      state.nonfinite_total.assign_add(1)
      return tf.constant(False)

    tf.cond(finite, apply, skip)
    state.step.assign_add(1)
