"""Adam applied through TensorFlow's one-op Adam kernel.

`FusedAdam` reads private attributes of Keras's Adam (its slots; the package's other
private-API uses are TFP's bijector cache in `model.bijectors.fused` and TF's op
statistics in `model.flops`, see docs/architecture.md). Where a Keras release no longer
has them, it falls back to `optimizer.apply` and says so once; `tests/test_adam.py`
fails with the reason when that happens with the pinned Keras.
"""

from absl import logging
import keras
import tensorflow as tf

# The private Keras attributes FusedAdam reads (Keras 3.12 to 3.15 have them).
PRIVATE_ATTRIBUTES = ("_momentums", "_velocities", "_get_variable_index")


def missing_private_attributes(optimizer):
  """The private attributes FusedAdam needs that a built `optimizer` lacks."""
  return [name for name in PRIVATE_ATTRIBUTES if not hasattr(optimizer, name)]


class FusedAdam:
  """Keras's `Adam`, each variable updated by one `ResourceApplyAdam` op.

  Keras's own update is about 8 ops per variable; TF's kernel computes the same
  formula (epsilon added to sqrt(v_hat), bias correction in the learning rate) in
  one. The optimizer keeps owning its variables (slots, iteration count), so
  checkpoints are Keras's own.

  `apply` runs in cross-replica context with gradients already summed over replicas,
  so Keras's own all-reduce is bypassed in both paths.
  """

  def __init__(self, optimizer: keras.optimizers.Adam, variables):
    self.optimizer = optimizer
    self.variables = list(variables)
    optimizer.build(self.variables)
    missing = missing_private_attributes(optimizer)
    self.fused = not missing
    if missing:
      logging.warning(
          "Keras %s's Adam has no %s: FusedAdam falls back to optimizer.apply "
          "(same update, slower).", keras.__version__, ", ".join(missing))
      return
    index = optimizer._get_variable_index  # pylint: disable=protected-access
    # The slot variables, in the order of self.variables.
    self.first_moments = [optimizer._momentums[index(v)]  # pylint: disable=protected-access
                          for v in self.variables]
    self.second_moments = [optimizer._velocities[index(v)]  # pylint: disable=protected-access
                           for v in self.variables]

  @property
  def iterations(self):
    return self.optimizer.iterations

  @property
  def learning_rate(self):
    return self.optimizer.learning_rate

  def apply(self, strategy, gradients):
    """One Adam step on every variable (on each replica's copy)."""
    if not self.fused:
      self.optimizer.apply(gradients, self.variables)
      return
    optimizer = self.optimizer
    learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    beta_1_power = tf.pow(tf.cast(optimizer.beta_1, tf.float32), step)
    beta_2_power = tf.pow(tf.cast(optimizer.beta_2, tf.float32), step)

    def update(var, grad, m, v):
      return tf.raw_ops.ResourceApplyAdam(
          var=var.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power,
          beta2_power=beta_2_power, lr=learning_rate, beta1=optimizer.beta_1,
          beta2=optimizer.beta_2, epsilon=optimizer.epsilon, grad=grad)

    for gradient, variable, m, v in zip(gradients, self.variables, self.first_moments,
                                        self.second_moments, strict=True):
      strategy.extended.update(variable, update, args=(gradient, m.value, v.value),
                               group=False)
    optimizer.iterations.assign_add(1)
