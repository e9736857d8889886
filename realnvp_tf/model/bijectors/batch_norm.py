"""Batch normalisation as a bijector (paper section 3.7)."""

import tensorflow as tf

from realnvp_tf.model.bijectors import fused
from realnvp_tf.model.nets import batch_statistics


class FlowBatchNorm(fused.FusedBijector):
  """Batch normalisation of the flow's activations, with its log-det.

  In the paper's direction (TFP's `inverse`, image side to latent side):

    inverse(y) = (y - mean) / sqrt(var + eps),   ildj = -1/2 H W sum_c log(var_c + eps)

  per channel c. In training mode (`training=True`) mean and var are the statistics of
  the batch, and the moving averages are updated with `momentum`; in inference mode
  (the default) the moving averages are used, which makes the layer an ordinary
  per-channel affine map. `training=batch_statistics.ESTIMATE_STATISTICS` normalises as
  training mode does and sets the moving averages to the batch's statistics. The
  log-det is that of the statistics used, holding them fixed, as in the paper.

  `forward` (latent side to image side, i.e. sampling) has no batch of images to take
  statistics of, so it always uses the moving averages.
  """

  def __init__(self, num_channels, momentum=batch_statistics.MOMENTUM,
               epsilon=batch_statistics.EPSILON, validate_args=False,
               name="batch_norm"):
    parameters = dict(locals())
    if num_channels <= 0:
      raise ValueError(f"num_channels must be positive; got {num_channels}.")
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"momentum must be in [0, 1); got {momentum}.")
    if epsilon <= 0:
      raise ValueError(f"epsilon must be positive; got {epsilon}.")
    self.momentum = float(momentum)
    self._epsilon = float(epsilon)
    with tf.name_scope(name) as name:
      # MEAN aggregation: updates made on each replica are averaged, so a strategy can
      # keep one value on all of them.
      variable_args = dict(trainable=False, aggregation=tf.VariableAggregation.MEAN,
                           synchronization=tf.VariableSynchronization.ON_WRITE)
      self.moving_mean = tf.Variable(
          tf.zeros([num_channels]), name="moving_mean", **variable_args)
      self.moving_variance = tf.Variable(
          tf.ones([num_channels]), name="moving_variance", **variable_args)
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  def _statistics(self, y, training):
    if training:
      return batch_statistics.batch_moments(y)
    return tf.convert_to_tensor(self.moving_mean), tf.convert_to_tensor(
        self.moving_variance)

  def _log_det(self, variance, reference):
    height, width = tf.shape(reference)[-3], tf.shape(reference)[-2]
    per_image = -0.5 * tf.cast(height * width, variance.dtype) * tf.reduce_sum(
        tf.math.log(variance + self._epsilon))
    return tf.fill(tf.shape(reference)[:-3], per_image)

  # `labels` (of a class-conditional flow) reach every step; batch norm ignores them.

  def _inverse_and_log_det(self, y, training=False, labels=None):
    del labels
    mean, variance = self._statistics(y, training)
    if training:
      batch_statistics.update_moving_averages(self, mean, variance, training)
    x = (y - mean) * tf.math.rsqrt(variance + self._epsilon)
    return x, self._log_det(variance, y)

  def _forward_and_log_det(self, x, training=False, labels=None):
    del training, labels  # No batch statistics in the sampling direction.
    mean, variance = self._statistics(x, training=False)
    y = x * tf.sqrt(variance + self._epsilon) + mean
    return y, -self._log_det(variance, x)

  def _inverse_log_det_jacobian(self, y, training=False, labels=None):
    del labels
    # Reached only for a tensor that was never inverted: takes the statistics
    # without updating the moving averages.
    return self._log_det(self._statistics(y, training)[1], y)
