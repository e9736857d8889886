"""Base class for bijectors that compute a transform and its log-det in one pass."""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

tfb = tfp.bijectors

# Every bijector in this package acts on images: events of rank 3, [H, W, C].
IMAGE_EVENT_NDIMS = 3


def sum_over_event(values):
  """Sums a [B, H, W, C] tensor over its event dimensions, giving [B]."""
  return tf.reduce_sum(values, axis=[-3, -2, -1])


class FusedBijector(tfb.Bijector):
  """A bijector on images whose log-det comes out of the same pass as the transform.

  `TransformedDistribution.log_prob(y)` calls `inverse(y)` and then
  `inverse_log_det_jacobian(y)`. For a coupling layer the log-det is a by-product of
  the transform (the sum of the network's `s`), so computing it separately would run
  the network twice. Subclasses implement

    _forward_and_log_det(x, **kwargs) -> (y, fldj)
    _inverse_and_log_det(y, **kwargs) -> (x, ildj)

  with the log-dets summed over the image dimensions ([B]), and this class stores the
  log-det in TFP's bijector cache next to the transformed tensor, the way TFP's own
  `FFJORD` does. The log-det methods then find it there; they compute it afresh only
  for a tensor that was never transformed.
  """

  _cache = cache_util.BijectorCacheWithGreedyAttrs(
      forward_name="_augmented_forward", inverse_name="_augmented_inverse")

  def __init__(self, parameters, name, validate_args=False, **kwargs):
    super().__init__(
        forward_min_event_ndims=IMAGE_EVENT_NDIMS, validate_args=validate_args,
        parameters=parameters, name=name, **kwargs)

  # TFP hashes and compares a bijector by its parameters, recursively through every
  # nested step, and its cache does so on each call: tracing a 4-scale flow spent
  # most of its time there (docs/performance.md, "Tracing"). These bijectors hold
  # variables, so two are the same bijector only if they are the same object (two
  # flows of one config compared equal, and could share cache entries).
  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other

  def _forward_and_log_det(self, x, **kwargs):
    raise NotImplementedError

  def _inverse_and_log_det(self, y, **kwargs):
    raise NotImplementedError

  def _augmented_forward(self, x, **kwargs):
    y, fldj = self._forward_and_log_det(x, **kwargs)
    return y, {"ildj": -fldj}

  def _augmented_inverse(self, y, **kwargs):
    x, ildj = self._inverse_and_log_det(y, **kwargs)
    return x, {"ildj": ildj}

  def _forward(self, x, **kwargs):
    return self._augmented_forward(x, **kwargs)[0]

  def _inverse(self, y, **kwargs):
    return self._augmented_inverse(y, **kwargs)[0]

  def _forward_log_det_jacobian(self, x, **kwargs):
    return -self._augmented_forward(x, **kwargs)[1]["ildj"]

  def _inverse_log_det_jacobian(self, y, **kwargs):
    return self._augmented_inverse(y, **kwargs)[1]["ildj"]


def inverse_and_log_det(bijector, y, **kwargs):
  """`(bijector.inverse(y), bijector.inverse_log_det_jacobian(y))` from one pass.

  Goes through the bijector's public methods, so that the cache serves the log-det
  computed by the inverse; works for any image bijector (for TFP's own ones, with
  their usual caching).
  """
  x = bijector.inverse(y, **kwargs)
  return x, bijector.inverse_log_det_jacobian(
      y, event_ndims=IMAGE_EVENT_NDIMS, **kwargs)


def forward_and_log_det(bijector, x, **kwargs):
  """`(bijector.forward(x), bijector.forward_log_det_jacobian(x))` from one pass."""
  y = bijector.forward(x, **kwargs)
  return y, bijector.forward_log_det_jacobian(
      x, event_ndims=IMAGE_EVENT_NDIMS, **kwargs)
