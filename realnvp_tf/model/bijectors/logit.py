"""The logit preprocessing between pixel space [0, K) and logit space."""

import math

import tensorflow as tf

from realnvp_tf.model.bijectors import fused


class LogitTransform(fused.FusedBijector):
  """Pixel space [0, K) <-> logit space, as in the paper's authors' code.

  With alpha = 0.05 the pixels are first mapped into [alpha, 1 - alpha], away from the
  logit's singularities:

    inverse(y) = logit(p),  p = alpha + (1 - 2 alpha) y / K
    forward(x) = (sigmoid(x) - alpha) K / (1 - 2 alpha)

  and the log-det carries every term, so `log_prob` of the flow is a density over pixel
  space with no correction needed elsewhere:

    ildj(y) = sum(log(1 - 2 alpha) - log K - log p - log(1 - p)).

  The image of the real line is
  (-alpha K / (1 - 2 alpha), (1 - alpha) K / (1 - 2 alpha)), slightly wider than
  [0, K): samples may fall a little outside [0, K).

  With `validate_args=True`, `inverse` checks that its input lies in [0, K].
  """

  def __init__(self, num_levels, alpha=0.05, validate_args=False,
               name="logit_transform"):
    parameters = dict(locals())
    if num_levels < 2:
      raise ValueError(f"num_levels must be >= 2; got {num_levels}.")
    if not 0.0 <= alpha < 0.5:
      raise ValueError(f"alpha must be in [0, 0.5); got {alpha}.")
    self._num_levels = float(num_levels)
    self._alpha = float(alpha)
    # log((1 - 2 alpha) / K): the log-det of the affine map into [alpha, 1 - alpha].
    self._log_affine_scale = math.log1p(-2.0 * alpha) - math.log(num_levels)
    with tf.name_scope(name) as name:
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  @property
  def num_levels(self):
    return self._num_levels

  @property
  def alpha(self):
    return self._alpha

  def _inverse_and_log_det(self, y, **kwargs):
    y = self._maybe_assert_pixels(y)
    p = self._alpha + math.exp(self._log_affine_scale) * y
    log_p, log_1mp = tf.math.log(p), tf.math.log1p(-p)
    ildj = fused.sum_over_event(self._log_affine_scale - log_p - log_1mp)
    return log_p - log_1mp, ildj

  def _forward_and_log_det(self, x, **kwargs):
    y = (tf.sigmoid(x) - self._alpha) / math.exp(self._log_affine_scale)
    log_p, log_1mp = tf.math.log_sigmoid(x), tf.math.log_sigmoid(-x)
    fldj = fused.sum_over_event(log_p + log_1mp - self._log_affine_scale)
    return y, fldj

  def _maybe_assert_pixels(self, y):
    if not self.validate_args:
      return y
    message = (f"{self.name}: pixel values must lie in [0, {self._num_levels:g}) "
               f"(dequantized intensities x + u, u in [0, 1)).")
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(y, tf.zeros([], y.dtype), message=message),
        tf.debugging.assert_less_equal(
            y, tf.constant(self._num_levels, y.dtype), message=message)]):
      return tf.identity(y)
