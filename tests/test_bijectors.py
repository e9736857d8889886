"""Each bijector alone: round trips, TFP's bijector contract, brute-force log-dets."""

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from realnvp_tf.model import bijectors
from realnvp_tf.model import config as config_lib
from realnvp_tf.model import nets

from flow_checks import assert_bijective_and_finite
from flow_checks import brute_force_log_det
from flow_checks import perturb_variables
from flow_checks import relative_error

tfb = tfp.bijectors


def _images(shape, seed, low=-2.0, high=2.0):
  return tf.random.stateless_uniform(shape, [seed, 1], low, high)


def _network(event_shape, mask_type, use_batch_norm=True, momentum=0.9):
  _, out_channels = bijectors.network_channels(event_shape, mask_type)
  return nets.CouplingResNet(out_channels, num_filters=4, num_blocks=1,
                             use_batch_norm=use_batch_norm,
                             batch_norm_momentum=momentum)


def _coupling(mask_type, parity, event_shape=(4, 4, 2), use_batch_norm=True,
              momentum=0.9):
  bijector = bijectors.AffineCoupling(
      event_shape, mask_type, parity,
      _network(event_shape, mask_type, use_batch_norm, momentum))
  perturb_variables(bijector, seed=parity, scale=0.3)
  return bijector


class _OneConvNetwork(keras.layers.Layer):
  """A user's own s/t network: one convolution, s = tanh of half of it."""

  def __init__(self, out_channels):
    super().__init__()
    self.conv = keras.layers.Conv2D(2 * out_channels, 3, padding="same")

  def build(self, input_shape):
    self.conv.build(input_shape)

  def call(self, inputs, training=False):
    s, t = tf.split(self.conv(inputs), 2, axis=-1)
    return tf.tanh(s), t


def _image_bijectors():
  """(name, bijector, (x, y)): x on the latent side, y on the image side."""
  cases = []
  for mask_type in ("checkerboard", "channel"):
    for parity in (0, 1):
      cases.append((f"coupling_{mask_type}_{parity}", _coupling(mask_type, parity),
                    (_images([3, 4, 4, 2], 1), _images([3, 4, 4, 2], 2))))
  norm = bijectors.FlowBatchNorm(2)
  perturb_variables(norm, seed=3)
  cases.append(("batch_norm", norm,
                (_images([3, 4, 4, 2], 3), _images([3, 4, 4, 2], 4))))
  cases.append(("logit", bijectors.LogitTransform(256),
                (_images([3, 4, 4, 2], 5, -6.0, 6.0),
                 _images([3, 4, 4, 2], 6, 0.0, 255.999))))
  cases.append(("squeeze", bijectors.Squeeze(),
                (_images([3, 2, 2, 8], 7), _images([3, 4, 4, 2], 8))))
  cases.append(("unsqueeze", tfb.Invert(bijectors.Squeeze()),
                (_images([3, 4, 4, 2], 9), _images([3, 2, 2, 8], 10))))
  own = bijectors.AffineCoupling((4, 4, 2), "channel", 0, _OneConvNetwork(1))
  perturb_variables(own, seed=15, scale=0.3)
  cases.append(("coupling_own_network", own,
                (_images([3, 4, 4, 2], 16), _images([3, 4, 4, 2], 17))))
  inner = _coupling("checkerboard", 0, event_shape=(4, 4, 1))
  cases.append(("factor_out", bijectors.FactorOut(inner),
                (_images([3, 4, 4, 2], 11), _images([3, 4, 4, 2], 12))))
  chain = bijectors.FlowChain([
      _coupling("checkerboard", 0), bijectors.Squeeze(), _coupling("channel", 1,
                                                                   (2, 2, 8)),
      tfb.Invert(bijectors.Squeeze())])
  cases.append(("chain", chain, (_images([3, 4, 4, 2], 13), _images([3, 4, 4, 2], 14))))
  return cases


CASES = _image_bijectors()
IDS = [name for name, _, _ in CASES]


@pytest.mark.parametrize("name,bijector,points", CASES, ids=IDS)
def test_round_trips(name, bijector, points):
  x, y = points
  assert relative_error(bijector.forward(tf.identity(bijector.inverse(y))), y) < 1e-4
  assert relative_error(bijector.inverse(tf.identity(bijector.forward(x))), x) < 1e-4


@pytest.mark.parametrize("name,bijector,points", CASES, ids=IDS)
def test_tfp_bijector_contract(name, bijector, points):
  x, y = points
  assert_bijective_and_finite(bijector, x, y)


@pytest.mark.parametrize("name,bijector,points", CASES, ids=IDS)
def test_log_det_matches_brute_force_jacobian(name, bijector, points):
  x, y = points
  expected_ildj = brute_force_log_det(bijector.inverse, y)
  ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=3)
  np.testing.assert_allclose(np.broadcast_to(ildj, expected_ildj.shape),
                             expected_ildj, atol=1e-3)
  expected_fldj = brute_force_log_det(bijector.forward, x)
  fldj = bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=3)
  np.testing.assert_allclose(np.broadcast_to(fldj, expected_fldj.shape),
                             expected_fldj, atol=1e-3)


@pytest.mark.parametrize("mask_type", ["checkerboard", "channel"])
def test_coupling_training_mode_log_det(mask_type):
  # In training mode the network normalises with batch statistics, but it only sees
  # the unchanged half, so the Jacobian stays triangular and the log-det is sum(s).
  bijector = _coupling(mask_type, 0)
  y = _images([4, 4, 4, 2], 20)
  ildj = bijector.inverse_log_det_jacobian(tf.identity(y), 3, training=True)
  expected = brute_force_log_det(lambda v: bijector.inverse(v, training=True), y)
  np.testing.assert_allclose(ildj, expected, atol=1e-3)
  inference = bijector.inverse_log_det_jacobian(tf.identity(y), 3)
  assert np.max(np.abs(ildj - inference)) > 1e-3, "training flag did not reach the net"


def test_coupling_leaves_conditioning_half_unchanged():
  bijector = _coupling("checkerboard", 1)
  y = _images([2, 4, 4, 2], 21)
  x = bijector.inverse(y).numpy()
  mask = (np.add.outer(np.arange(4), np.arange(4)) + 1) % 2 == 1
  np.testing.assert_array_equal(x[:, mask], y.numpy()[:, mask])
  assert np.max(np.abs(x[:, ~mask] - y.numpy()[:, ~mask])) > 1e-3
  channel = _coupling("channel", 1)
  x = channel.inverse(y).numpy()
  np.testing.assert_array_equal(x[..., 1], y.numpy()[..., 1])


def test_new_coupling_is_identity():
  bijector = bijectors.AffineCoupling((4, 4, 2), "checkerboard", 0,
                                      _network((4, 4, 2), "checkerboard"))
  y = _images([2, 4, 4, 2], 22)
  np.testing.assert_array_equal(bijector.inverse(y), y)
  np.testing.assert_array_equal(bijector.inverse_log_det_jacobian(y, 3), [0.0, 0.0])


def test_batch_norm_training_mode():
  norm = bijectors.FlowBatchNorm(2, momentum=0.0)
  y = _images([8, 4, 4, 2], 23) * [1.0, 3.0] + [0.5, -1.0]
  x = norm.inverse(y, training=True)
  mean, var = tf.nn.moments(y, axes=[0, 1, 2])
  np.testing.assert_allclose(tf.reduce_mean(x, [0, 1, 2]), [0.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(tf.math.reduce_variance(x, [0, 1, 2]),
                             var / (var + 1e-4), rtol=1e-4)
  # With momentum 0 the moving averages now hold the batch statistics, so inference
  # mode is the training-mode map with the statistics held fixed: its brute-force
  # Jacobian is the training-mode log-det.
  np.testing.assert_allclose(norm.moving_mean, mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(norm.moving_variance, var, rtol=1e-5)
  ildj = norm.inverse_log_det_jacobian(tf.identity(y), 3, training=True)
  np.testing.assert_allclose(ildj, brute_force_log_det(norm.inverse, y), atol=1e-3)


def test_batch_norm_moving_average_update():
  norm = bijectors.FlowBatchNorm(1, momentum=0.9)
  y = tf.fill([4, 2, 2, 1], 3.0) + _images([4, 2, 2, 1], 24, -1.0, 1.0)
  mean, var = tf.nn.moments(y, axes=[0, 1, 2])
  norm.inverse(y, training=True)
  np.testing.assert_allclose(norm.moving_mean, 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(norm.moving_variance, 0.9 + 0.1 * var, rtol=1e-5)
  # Inference mode and the log-det path leave them alone.
  norm.inverse(tf.identity(y))
  norm.inverse_log_det_jacobian(tf.identity(y), 3, training=True)
  np.testing.assert_allclose(norm.moving_mean, 0.1 * mean, rtol=1e-5)


def test_logit_log_det_includes_pixel_scaling():
  # A constant image at the centre of [0, K): p = 1/2, so the per-pixel log-det is
  # log(1 - 2 alpha) - log K - 2 log(1/2).
  logit = bijectors.LogitTransform(256, alpha=0.05)
  y = tf.fill([1, 2, 2, 1], 128.0)
  expected = 4 * (np.log(0.9) - np.log(256.0) + 2 * np.log(2.0))
  np.testing.assert_allclose(logit.inverse_log_det_jacobian(y, 3), [expected],
                             rtol=1e-6)
  np.testing.assert_allclose(logit.inverse(y), np.zeros([1, 2, 2, 1]), atol=1e-6)


def test_logit_validate_args_rejects_out_of_range_pixels():
  logit = bijectors.LogitTransform(256, validate_args=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 256\)"):
    logit.inverse(tf.fill([1, 2, 2, 1], 300.0))


def test_squeeze_layout():
  y = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
  x = bijectors.Squeeze().inverse(y)
  assert x.shape == (1, 2, 2, 4)
  # Top-left 2x2 block [[0, 1], [4, 5]]: (i + j) even pixels (0, 5) first.
  np.testing.assert_array_equal(x[0, 0, 0], [0.0, 5.0, 1.0, 4.0])
  assert bijectors.Squeeze().inverse_event_shape([4, 4, 1]) == [2, 2, 4]
  assert bijectors.Squeeze().forward_event_shape([2, 2, 4]) == [4, 4, 1]


@pytest.mark.parametrize("kwargs,match", [
    (dict(event_shape=(4, 4), mask_type="channel", parity=0), "event_shape"),
    (dict(event_shape=(4, 4, 3), mask_type="channel", parity=0), "even number"),
    (dict(event_shape=(4, 4, 2), mask_type="diagonal", parity=0), "mask_type"),
    (dict(event_shape=(4, 4, 2), mask_type="channel", parity=2), "parity"),
    (dict(event_shape=(4, 4, 2), mask_type="channel", parity=0),
     "needs a network with 1 output channels; got 2"),
])
def test_coupling_rejects_bad_arguments(kwargs, match):
  network = nets.CouplingResNet(2, num_filters=4, num_blocks=1)
  with pytest.raises(ValueError, match=match):
    bijectors.AffineCoupling(network=network, **kwargs)


def test_other_bijectors_reject_bad_arguments():
  with pytest.raises(ValueError, match="num_levels"):
    bijectors.LogitTransform(1)
  with pytest.raises(ValueError, match="alpha"):
    bijectors.LogitTransform(256, alpha=0.5)
  with pytest.raises(ValueError, match="momentum"):
    bijectors.FlowBatchNorm(2, momentum=1.0)
  with pytest.raises(ValueError, match="even height"):
    bijectors.Squeeze().inverse(tf.zeros([1, 3, 4, 1]))


def test_a_flow_bijector_is_equal_only_to_itself_and_hashes_without_its_steps():
  # TFP compares and hashes bijectors by their parameters, recursively through nested
  # steps, and its cache hashes on every call (most of the tracing time of a 4-scale
  # flow). Two flows of one config hold different variables: they are not equal.
  config = config_lib.RealNVPConfig(image_shape=(8, 8, 1), num_scales=2,
                                    num_res_blocks=1, num_filters=4, num_levels=17)
  first, second = (bijectors.RealNVPBijector(config) for _ in range(2))
  assert first == first and first != second
  with mock.patch.object(cache_util, "hashable_structure",
                         side_effect=AssertionError("hashed by parameters")):
    assert len({first, second, first.chain, first.chain.steps[1]}) == 4
