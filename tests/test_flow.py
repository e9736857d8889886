"""The whole RealNVP flow: invertibility, exact log-likelihoods, variables, errors."""

import math

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf.model import nets

from flow_checks import brute_force_log_det
from flow_checks import perturb_variables
from flow_checks import relative_error


def _flow(image_shape, num_scales, seed=0, **kwargs):
  kwargs = dict(dict(num_res_blocks=1, num_filters=4), **kwargs)
  config = realnvp_tf.RealNVPConfig(image_shape=image_shape, num_scales=num_scales,
                                    **kwargs)
  flow = realnvp_tf.build_realnvp(config)
  perturb_variables(flow, seed=seed)
  return flow


def _pixels(shape, seed, num_levels=256):
  """Integer pixels plus uniform dequantization noise, in [0, K)."""
  integers = tf.random.stateless_uniform(shape, [seed, 0], 0, num_levels, tf.int32)
  noise = tf.random.stateless_uniform(shape, [seed, 1])
  return tf.cast(integers, tf.float32) + noise


@pytest.mark.parametrize("image_shape,num_scales", [
    ((8, 8, 1), 2), ((28, 28, 1), 3), ((32, 32, 3), 2), ((32, 32, 3), 3),
    ((64, 64, 3), 4)])
def test_round_trips(image_shape, num_scales):
  flow = _flow(image_shape, num_scales)
  x = _pixels((2,) + image_shape, seed=1)
  z = flow.bijector.inverse(x)
  assert z.shape == x.shape
  assert relative_error(flow.bijector.forward(tf.identity(z)), x) < 1e-4
  z = flow.distribution.sample(2, seed=[2, 3])
  assert relative_error(flow.bijector.inverse(tf.identity(flow.bijector.forward(z))),
                        z) < 1e-4


@pytest.mark.parametrize("image_shape,num_scales", [
    ((4, 4, 1), 2), ((4, 4, 1), 3), ((8, 8, 1), 2), ((4, 4, 2), 2)])
def test_log_prob_matches_brute_force_inference_mode(image_shape, num_scales):
  flow = _flow(image_shape, num_scales)
  x = _pixels((3,) + image_shape, seed=4)
  expected = (flow.distribution.log_prob(flow.bijector.inverse(tf.identity(x))) +
              brute_force_log_det(flow.bijector.inverse, x))
  np.testing.assert_allclose(flow.log_prob(tf.identity(x)), expected, atol=1e-3)


@pytest.mark.parametrize("image_shape,num_scales", [
    ((4, 4, 1), 2), ((8, 8, 1), 2), ((4, 4, 2), 2)])
def test_log_prob_matches_brute_force_training_mode(image_shape, num_scales):
  # Momentum 0: a training-mode pass leaves the batch statistics in the moving
  # averages, so inference mode afterwards is the training-mode map with those
  # statistics held fixed (as the paper's log-det treats them).
  flow = _flow(image_shape, num_scales, batch_norm_momentum=0.0)
  x = _pixels((6,) + image_shape, seed=5)
  before = flow.log_prob(tf.identity(x))
  train_lp = flow.log_prob(tf.identity(x), bijector_kwargs={"training": True})
  assert np.max(np.abs(train_lp - before)) > 1e-2, "training mode changed nothing"
  expected = (flow.distribution.log_prob(flow.bijector.inverse(tf.identity(x))) +
              brute_force_log_det(flow.bijector.inverse, x))
  np.testing.assert_allclose(train_lp, expected, atol=1e-3)


def test_training_mode_in_tf_function_updates_moving_statistics():
  flow = _flow((8, 8, 1), 2)
  moving = [v for v in flow.variables if "moving" in v.name]
  assert len(moving) > 0
  before = [v.numpy().copy() for v in moving]
  train_log_prob = tf.function(
      lambda x: flow.log_prob(x, bijector_kwargs={"training": True}))
  train_log_prob(_pixels((4, 8, 8, 1), seed=6))
  changed = [not np.allclose(b, v.numpy()) for b, v in zip(before, moving, strict=True)]
  assert all(changed), f"{changed.count(False)} moving statistics did not change"
  after = [v.numpy().copy() for v in moving]
  flow.log_prob(_pixels((4, 8, 8, 1), seed=7))
  for a, v in zip(after, moving, strict=True):
    np.testing.assert_array_equal(a, v.numpy())


def test_samples_finite_and_log_prob_finite_on_every_pixel_value():
  flow = _flow((8, 8, 1), 2)
  samples = flow.sample(16, seed=[8, 9])
  assert samples.shape == (16, 8, 8, 1)
  assert np.all(np.isfinite(samples))
  images = realnvp_tf.to_images(samples, 256)
  assert images.dtype == tf.uint8
  np.testing.assert_array_equal(images, np.clip(np.floor(samples), 0, 255))
  every_value = tf.reshape(tf.range(256, dtype=tf.float32), [4, 8, 8, 1])
  extremes = tf.stack([tf.zeros([8, 8, 1]), tf.fill([8, 8, 1], 255.0)])
  noise = tf.random.stateless_uniform([6, 8, 8, 1], [10, 0])
  x = tf.concat([every_value, extremes], 0)
  for u in (noise, tf.zeros_like(noise), tf.fill(noise.shape, 0.999999)):
    assert np.all(np.isfinite(flow.log_prob(x + u)))


def test_digits_levels_and_single_image_shapes():
  flow = _flow((8, 8, 1), 2, num_levels=17)
  x = _pixels((5, 8, 8, 1), seed=11, num_levels=17)
  lp = flow.log_prob(x)
  assert np.all(np.isfinite(lp))
  # No batch dimension, and two of them: same numbers.
  np.testing.assert_allclose(flow.log_prob(x[0]), lp[0], rtol=1e-5)
  np.testing.assert_allclose(flow.log_prob(tf.reshape(x[:4], [2, 2, 8, 8, 1])),
                             tf.reshape(lp[:4], [2, 2]), rtol=1e-5)
  assert flow.sample(seed=[1, 2]).shape == (8, 8, 1)
  assert flow.sample([2, 3], seed=[1, 2]).shape == (2, 3, 8, 8, 1)


def test_bits_per_dim():
  log_prob = tf.constant([-1000.0, -500.0])
  expected = np.array([1000.0, 500.0]) / (28 * 28 * math.log(2.0))
  np.testing.assert_allclose(realnvp_tf.bits_per_dim(log_prob, (28, 28, 1)), expected,
                             rtol=1e-6)
  # A fresh flow is near the uniform density on [0, K): 8 bits/dim for K = 256.
  config = realnvp_tf.RealNVPConfig(image_shape=(8, 8, 1), num_scales=2,
                                    num_res_blocks=1, num_filters=4)
  flow = realnvp_tf.build_realnvp(config)
  bpd = realnvp_tf.bits_per_dim(flow.log_prob(_pixels((8, 8, 8, 1), 12)), (8, 8, 1))
  assert 7.0 < float(tf.reduce_mean(bpd)) < 10.0


def _net_weights(flow):
  layers = [c.net for c in flow.bijector.couplings]
  return ([w for layer in layers for w in layer.trainable_weights],
          [w for layer in layers for w in layer.weights])


def test_flow_owns_every_variable():
  flow = _flow((8, 8, 1), 2)
  trainable, every = _net_weights(flow)
  num_flow_bn = sum(isinstance(m, realnvp_tf.model.bijectors.FlowBatchNorm)
                    for m in flow.submodules)
  assert num_flow_bn == len(flow.bijector.couplings) == 6 + 4

  def ids(vs):
    return sorted(id(v) for v in vs)

  assert ids(flow.trainable_variables) == ids(w.value for w in trainable)
  assert len(flow.variables) == len(every) + 2 * num_flow_bn
  assert len(realnvp_tf.weight_scale_variables(flow)) == (
      len(flow.bijector.couplings) * (2 + 2 * 1 + 1))


@pytest.mark.parametrize("mode", ["eager", "tf_function"])
@pytest.mark.parametrize("training", [False, True])
def test_gradients_reach_every_trainable_variable(mode, training):
  flow = _flow((8, 8, 1), 2)

  def grads(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x, bijector_kwargs={"training": training}))
    return tape.gradient(loss, flow.trainable_variables)

  fn = tf.function(grads) if mode == "tf_function" else grads
  gradients = fn(_pixels((4, 8, 8, 1), seed=13))
  missing = [v.name for v, g in zip(flow.trainable_variables, gradients, strict=True)
             if g is None]
  assert not missing
  assert all(np.all(np.isfinite(g)) for g in gradients)
  assert (sum(float(tf.reduce_sum(tf.abs(g))) > 0 for g in gradients)
          > len(gradients) / 2)


def test_checkpoint_round_trip(tmp_path):
  flow = _flow((8, 8, 1), 2, seed=14)
  x = _pixels((4, 8, 8, 1), seed=15)
  expected = flow.log_prob(x)
  path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))
  other = _flow((8, 8, 1), 2, seed=16)
  assert np.max(np.abs(other.log_prob(tf.identity(x)) - expected)) > 1e-2
  tf.train.Checkpoint(flow=other).read(path).assert_consumed()
  np.testing.assert_array_equal(other.log_prob(tf.identity(x)), expected)


@pytest.mark.parametrize("mode", ["eager", "tf_function"])
def test_one_network_call_per_coupling_per_log_prob(mode, monkeypatch):
  flow = _flow((8, 8, 1), 2)
  calls = []
  original = nets.CouplingResNet.call

  def counting_call(self, *args, **kwargs):
    calls.append(self.name)
    return original(self, *args, **kwargs)

  monkeypatch.setattr(nets.CouplingResNet, "call", counting_call)
  log_prob = flow.log_prob
  if mode == "tf_function":
    log_prob = tf.function(
        lambda x: flow.log_prob(x, bijector_kwargs={"training": True}))
  log_prob(_pixels((2, 8, 8, 1), seed=17))
  names = sorted(c.net.name for c in flow.bijector.couplings)
  assert sorted(calls) == names  # each network exactly once


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_shape=(28, 28, 1), num_scales=4),
     r"divisible by 2\*\*\(num_scales - 1\) = 8"),
    (dict(image_shape=(10, 8, 1), num_scales=3), r"\(10, 8, 1\)"),
    (dict(num_levels=1), "num_levels"),
    (dict(num_filters=0), "num_filters"),
    (dict(num_res_blocks=-1), "num_res_blocks"),
    (dict(num_scales=0), "num_scales"),
    (dict(image_shape=(28, 28)), "image_shape"),
    (dict(image_shape=(0, 28, 1)), "image_shape"),
    (dict(dropout_rate=1.0), "dropout_rate"),
    (dict(dropout_rate=-0.1), "dropout_rate"),
])
def test_invalid_configs(kwargs, match):
  with pytest.raises(ValueError, match=match):
    realnvp_tf.RealNVPConfig(**kwargs)


def test_dropout_acts_in_the_training_step_only():
  """Same weights, dropout 0.5 against none: inference mode and the batch-norm
  re-estimation pass give the same log-densities to the last bit, the training step
  other ones (and other ones again on a second call: fresh masks)."""
  plain = _flow((8, 8, 1), 2, num_res_blocks=2)
  dropped = _flow((8, 8, 1), 2, num_res_blocks=2, dropout_rate=0.5)
  assert len(plain.variables) == len(dropped.variables)  # dropout adds none
  for source, target in zip(plain.variables, dropped.variables, strict=True):
    target.assign(source)
  x = _pixels([4, 8, 8, 1], 5)

  def log_probs(training):
    return [realnvp_tf.model.flow.log_prob(flow, x, training=training).numpy()
            for flow in (plain, dropped)]

  inference, estimation = log_probs(False), log_probs(nets.ESTIMATE_STATISTICS)
  np.testing.assert_array_equal(inference[0], inference[1])
  np.testing.assert_array_equal(estimation[0], estimation[1])
  first, second = log_probs(True)[1], log_probs(True)[1]
  assert np.all(np.isfinite(first))
  assert np.abs(first - log_probs(True)[0]).min() > 1e-3
  assert np.abs(first - second).min() > 1e-3


def test_invalid_inputs():
  flow = _flow((8, 8, 1), 2)
  with pytest.raises(ValueError,
                     match=r"\[\.\.\., 8, 8, 1\].*got shape \(2, 8, 8, 3\)"):
    flow.log_prob(tf.zeros([2, 8, 8, 3]))
  with pytest.raises(ValueError, match=r"got shape \(8, 8\)"):
    flow.log_prob(tf.zeros([8, 8]))
  with pytest.raises(ValueError, match=r"got shape \(2, 16, 16, 1\)"):
    flow.log_prob(tf.zeros([2, 16, 16, 1]))
  with pytest.raises(TypeError, match="RealNVPConfig"):
    realnvp_tf.build_realnvp({"image_shape": (8, 8, 1)})
  checked = realnvp_tf.build_realnvp(flow.bijector.config, validate_args=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 256\)"):
    checked.log_prob(tf.fill([1, 8, 8, 1], -1.0))


@pytest.mark.parametrize("image_shape,num_scales,dtype", [
    ((8, 8, 1), 2, "bfloat16"), ((4, 4, 2), 2, "float16"), ((4, 4, 2), 2, "bfloat16")])
def test_reduced_precision_networks_keep_the_flow_exact(image_shape, num_scales, dtype):
  flow = _flow(image_shape, num_scales, compute_dtype=dtype)
  nets_dtypes = {c.net.compute_dtype for c in flow.bijector.couplings}
  assert nets_dtypes == {dtype}
  assert {v.dtype for v in flow.variables} == {tf.float32}
  x = _pixels((3,) + image_shape, seed=18)
  z = flow.bijector.inverse(x)
  assert z.dtype == tf.float32
  assert relative_error(flow.bijector.forward(tf.identity(z)), x) < 1e-4
  expected = (flow.distribution.log_prob(flow.bijector.inverse(tf.identity(x))) +
              brute_force_log_det(flow.bijector.inverse, x))
  np.testing.assert_allclose(flow.log_prob(tf.identity(x)), expected, atol=1e-3)
  float32 = _flow(image_shape, num_scales)
  for a, b in zip(float32.variables, flow.variables, strict=True):
    b.assign(a)
  # Same weights: bfloat16 / float16 networks change log_prob only a little.
  np.testing.assert_allclose(flow.log_prob(tf.identity(x)),
                             float32.log_prob(tf.identity(x)), rtol=2e-2)
  with pytest.raises(ValueError, match="compute_dtype"):
    realnvp_tf.RealNVPConfig(compute_dtype="float64")


def test_sample_at_a_temperature_decodes_scaled_normal_noise():
  config = realnvp_tf.RealNVPConfig(image_shape=(8, 8, 1), num_levels=17, num_scales=2,
                                    num_res_blocks=1, num_filters=4)
  flow = realnvp_tf.build_realnvp(config)
  perturb_variables(flow, seed=2)
  cold = realnvp_tf.sample(flow, 2, temperature=0.0, seed=[1, 2])
  np.testing.assert_allclose(cold, flow.bijector.forward(tf.zeros([2, 8, 8, 1])),
                             rtol=1e-6)
  warm = realnvp_tf.sample(flow, 2, temperature=0.6, seed=[1, 2])
  z = 0.6 * tf.random.stateless_normal([2, 8, 8, 1], [1, 2])
  np.testing.assert_allclose(warm, flow.bijector.forward(z), rtol=1e-5, atol=1e-5)
  assert realnvp_tf.sample(flow, 3).shape == (3, 8, 8, 1)  # unseeded
