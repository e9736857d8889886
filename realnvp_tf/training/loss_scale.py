"""Dynamic loss scaling for float16 s/t networks.

float16 represents magnitudes from about 6e-8 (subnormal) to 65504. The gradients that
flow back through the networks' float16 activations are often smaller than the first
and would round to zero; multiplying the loss by a scale S multiplies them by S as
well, into range, and dividing the float32 gradients of the variables by S afterwards
gives the true gradient. Too large an S overflows to inf instead: that step is skipped
and S halved; after `growth_steps` applied steps in a row, S is doubled again (the
scheme of Micikevicius et al., 2018, and of Keras's `LossScaleOptimizer`).

Keras 3's `LossScaleOptimizer` unscales inside its `apply`, which the fused Adam step
(`training.adam`) does not call, so the training step scales and unscales with this
object itself, once: the loss per replica, the gradients after their all-reduce.
bfloat16 has float32's exponent range and needs none of this.
"""

import tensorflow as tf

# An overflow at this scale is not the scale's fault: the step counts as non-finite.
MIN_SCALE = 1.0


class DynamicLossScale(tf.Module):
  """The loss scale of a float16 run, its growth counter and its skipped-step count.

  Made inside the strategy's scope (its variables are mirrored) and checkpointed with
  the run, so a resumed run continues with the scale it had reached.

  Args:
    initial_scale: S at the first step (Keras's default, 2**15).
    growth_steps: S doubles after this many applied steps in a row.
  """

  def __init__(self, initial_scale=2.0**15, growth_steps=2000):
    super().__init__(name="loss_scale")
    if not initial_scale >= MIN_SCALE or growth_steps <= 0:
      raise ValueError(f"initial_scale must be >= {MIN_SCALE} and growth_steps "
                       f"positive; got {initial_scale}, {growth_steps}.")
    self.growth_steps = int(growth_steps)
    self.scale = tf.Variable(float(initial_scale), trainable=False, name="scale")
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")
    self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")

  def scale_loss(self, loss):
    return loss * self.scale

  def unscale(self, gradients):
    """The true gradients of scaled ones (call once, after the all-reduce)."""
    inverse = 1.0 / self.scale
    return [g * inverse for g in gradients]

  def overflowed(self, loss_finite, gradients_finite):
    """Whether a step's non-finite gradients are the scale's doing: the loss itself is
    finite and the scale can still be lowered."""
    return tf.logical_and(tf.logical_and(loss_finite, tf.logical_not(gradients_finite)),
                          self.scale > MIN_SCALE)

  def after_applied_step(self):
    """Counts an applied step; doubles the scale after `growth_steps` in a row."""
    grow = self.good_steps + 1 >= self.growth_steps
    self.scale.assign(tf.where(grow, self.scale * 2.0, self.scale))
    self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64),
                                    self.good_steps + 1))

  def after_overflow(self):
    """Halves the scale (not below MIN_SCALE) and counts the skipped step."""
    self.scale.assign(tf.maximum(self.scale * 0.5, MIN_SCALE))
    self.good_steps.assign(0)
    self.skipped.assign_add(1)
