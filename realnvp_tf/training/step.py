"""The training step: the paper's loss, its gradients over replicas, clipping, Adam; N
steps per call."""

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
  """What a step returns; a loop of steps returns each as a vector, one per step."""
  bits: tf.Tensor  # the batch's mean bits/dim
  grad_norm: tf.Tensor  # global gradient norm before clipping
  finite: tf.Tensor  # whether the update was applied
  overflow: tf.Tensor  # skipped for a float16 overflow (the loss scale was halved)
  loss_scale: tf.Tensor  # the loss scale the step used (1 without loss scaling)
  learning_rate: tf.Tensor  # the learning rate of the step


class TrainStep:
  """`tf.function` steps of a `TrainState` on the next batches of a distributed
  iterator.

  Per replica: bits/dim of its images in training mode (batch norm on the global
  batch's statistics), plus the L2 penalty on the weight scales; each replica's loss
  is its share of the global batch's, so the gradients summed over the replicas are
  the global batch's gradient. They are clipped by their global norm and applied by
  Adam. A class-conditional flow's batches are (images, labels), its loss
  -log p(x | y). A step whose loss or gradient norm is not finite changes nothing but
  the step and skip counters: weights, Adam's slots, the EMA and the batch-norm
  statistics stay as they were.

  float16 s/t networks (`state.loss_scale`): the loss is multiplied by the loss scale
  S before the gradients and the all-reduced gradients divided by S, once, before
  clipping. A step whose gradients overflow while its loss is finite is skipped and S
  halved, without counting toward `max_nonfinite_steps` (early in training that is
  expected); see `loss_scale`.

  `step(iterator, num_steps)` runs up to `num_steps` steps in one call, with no host
  synchronisation between them; it stops early once `max_nonfinite_steps` steps in a
  row were skipped as non-finite. It returns a `StepOutput` of vectors, one entry
  per step taken.
  """

  def __init__(self, state, model_config, train_config, strategy):
    self.state = state
    self.strategy = strategy
    self.config = train_config
    self._image_shape = model_config.image_shape
    self._conditional = model_config.conditional
    self._l2_variables = flow_lib.weight_scale_variables(state.flow)
    self._loop = tf.function(self._distributed_loop)
    # One step alone, without the while loop: the loop's graph held about 45 MB more
    # at the peak of the bench config's step (docs/performance.md).
    self._single = tf.function(lambda iterator: StepOutput(
        *(tf.expand_dims(v, 0) for v in self._distributed_step(iterator))))

  def __call__(self, iterator, num_steps=1):
    """Up to `num_steps` steps: a `StepOutput` of vectors (as the first replica holds
    them). A run of one step per call (`steps_per_loop` 1) traces only the single
    step; a run of several traces only the loop (its last calls before a checkpoint
    may be of one step)."""
    if num_steps == 1 and self.config.steps_per_loop == 1:
      return self._single(iterator)
    return self._loop(iterator, tf.constant(num_steps, tf.int32))

  def compute_gradients(self, batch):
    """This replica's gradients, summed over replicas (call inside `strategy.run`).

    `batch`: images, or (images, labels) for a class-conditional flow. Training mode:
    the batch norms update their moving averages. With loss scaling the gradients
    returned are unscaled.
    """
    images, labels = batch if self._conditional else (batch, None)
    context = tf.distribute.get_replica_context()
    loss_scale = self.state.loss_scale
    with tf.GradientTape() as tape:
      log_prob = flow_lib.log_prob(self.state.flow, images, labels, training=True)
      bits = flow_lib.bits_per_dim(tf.reduce_sum(log_prob),
                                   self._image_shape) / self.config.batch_size
      l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_variables])
      loss = bits + self.config.l2_coeff * l2 / context.num_replicas_in_sync
      if loss_scale is not None:
        loss = loss_scale.scale_loss(loss)
    gradients = tape.gradient(loss, self.state.variables)
    # Summed here, not by the optimizer, so that clipping sees the global gradient.
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    if loss_scale is not None:
      gradients = loss_scale.unscale(gradients)
    bits = context.all_reduce(tf.distribute.ReduceOp.SUM, bits)
    clipped, grad_norm = tf.clip_by_global_norm(gradients, self.config.clip_norm)
    return Gradients(bits, gradients, grad_norm, clipped)

  def _distributed_loop(self, iterator, num_steps):
    outputs = StepOutput(*(tf.TensorArray(dtype, size=0, dynamic_size=True)
                           for dtype in _OUTPUT_DTYPES))
    streak, limit = self.state.nonfinite_streak, self.config.max_nonfinite_steps

    def running(i, unused_outputs):
      return tf.logical_and(i < num_steps, streak.read_value() < limit)

    def step(i, outputs):
      out = self._distributed_step(iterator)
      return i + 1, StepOutput(*(a.write(i, v)
                                 for a, v in zip(outputs, out, strict=True)))

    _, outputs = tf.while_loop(running, step, (tf.constant(0), outputs))
    return StepOutput(*(a.stack() for a in outputs))

  def _distributed_step(self, iterator):
    out = self.strategy.run(self._replica_step, args=(next(iterator),))

    def first(value):
      return self.strategy.experimental_local_results(value)[0]

    return StepOutput(*(first(value) for value in out))

  def _replica_step(self, batch):
    # The training-mode pass updates the moving statistics; a skipped step puts them
    # back.
    statistics = [tf.identity(v) for v in self.state.statistics]
    loss_scale = self.state.loss_scale
    scale = (tf.identity(loss_scale.scale) if loss_scale is not None
             else tf.constant(1.0))
    learning_rate = tf.cast(self.state.optimizer.learning_rate, tf.float32)
    out = self.compute_gradients(batch)
    loss_finite = tf.math.is_finite(out.bits)
    finite = tf.logical_and(tf.math.is_finite(out.grad_norm), loss_finite)
    overflow = (loss_scale.overflowed(loss_finite, finite) if loss_scale is not None
                else tf.constant(False))
    tf.distribute.get_replica_context().merge_call(
        self._apply_if_finite,
        args=(out.clipped_gradients, statistics, finite, overflow))
    return StepOutput(out.bits, out.grad_norm, finite, overflow, scale, learning_rate)

  def _apply_if_finite(self, strategy, gradients, statistics, finite, overflow):
    # Cross-replica context, where a tf.cond may hold the updates (in replica context
    # it may not hold a synchronisation point).
    def first(value):
      return strategy.experimental_local_results(value)[0]

    finite, overflow = first(finite), first(overflow)
    state = self.state

    def apply():
      state.optimizer.apply(strategy, gradients)
      state.update_ema(self.config.ema_decay)
      state.nonfinite_streak.assign(0)
      if state.loss_scale is not None:
        state.loss_scale.after_applied_step()
      return tf.constant(True)

    def count_nonfinite():
      state.nonfinite_streak.assign_add(1)
      state.nonfinite_total.assign_add(1)
      return tf.constant(False)

    def lower_scale():
      state.loss_scale.after_overflow()
      return tf.constant(False)

    def skip():
      for variable, value in zip(state.statistics, statistics, strict=True):
        strategy.extended.update(variable, lambda var, val: var.assign(val),
                                 args=(value,), group=False)
      if state.loss_scale is None:
        return count_nonfinite()
      return tf.cond(overflow, lower_scale, count_nonfinite)

    tf.cond(finite, apply, skip)
    state.step.assign_add(1)


_OUTPUT_DTYPES = StepOutput(tf.float32, tf.float32, tf.bool, tf.bool, tf.float32,
                            tf.float32)
