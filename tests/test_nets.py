"""The s/t network's layers."""

import numpy as np
import pytest
import tensorflow as tf

from realnvp_tf.model import nets
from realnvp_tf.model.nets import recompute


def test_weight_norm_conv_has_the_gain_as_filter_norm():
  conv = nets.WeightNormConv2D(5, gain_initializer="ones")
  conv.build((None, 6, 6, 3))
  conv.gain.assign(np.arange(1.0, 6.0, dtype=np.float32))
  x = tf.random.stateless_normal([2, 6, 6, 3], [1, 2])
  direction = conv.direction.numpy()
  kernel = direction * (np.arange(1.0, 6.0) / np.sqrt((direction ** 2).sum((0, 1, 2))))
  expected = tf.nn.conv2d(x, kernel.astype(np.float32), 1, "SAME")
  np.testing.assert_allclose(conv(x), expected, rtol=1e-4, atol=1e-5)
  assert nets.WeightNormConv2D.from_config(conv.get_config()).filters == 5


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_batch_norm_training_and_inference(dtype):
  norm = nets.BatchNorm(momentum=0.0, epsilon=1e-4, dtype=dtype)
  norm.build((None, 4, 4, 3))
  norm.gamma.assign([1.0, 2.0, 0.5])
  norm.beta.assign([0.0, 1.0, -1.0])
  x = (tf.random.stateless_normal([8, 4, 4, 3], [3, 4]) * [1.0, 3.0, 0.2]
       + [0.0, 5.0, 1.0])
  mean, var = tf.nn.moments(x, [0, 1, 2])
  expected = (x - mean) / tf.sqrt(var + 1e-4) * norm.gamma + norm.beta
  tolerance = 1e-4 if dtype == "float32" else 5e-2
  np.testing.assert_allclose(norm(x, training=True), expected, rtol=tolerance,
                             atol=tolerance)
  # Momentum 0: the moving averages now hold the (biased) batch statistics, and
  # inference mode reproduces the training-mode output.
  np.testing.assert_allclose(norm.moving_mean, mean, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(norm.moving_variance, var, rtol=1e-2 if dtype != "float32"
                             else 1e-5)
  np.testing.assert_allclose(norm(x, training=False), expected, rtol=tolerance,
                             atol=tolerance)


def test_batch_norm_gradient_matches_unfused_math():
  norm = nets.BatchNorm(epsilon=1e-4)
  norm.build((None, 4, 4, 2))
  x = tf.random.stateless_normal([6, 4, 4, 2], [5, 6])
  weights = tf.random.stateless_normal([6, 4, 4, 2], [7, 8])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    fused = tf.reduce_sum(norm(x, training=True) * weights)
    mean, var = tf.nn.moments(x, [0, 1, 2])
    plain = tf.reduce_sum(((x - mean) / tf.sqrt(var + 1e-4)) * weights)
  np.testing.assert_allclose(tape.gradient(fused, x), tape.gradient(plain, x),
                             rtol=1e-3, atol=1e-4)


def _plain_relu_conv(x, gamma, beta, direction, gain, bias, epsilon):
  """conv(relu(bn(x))) with training-mode batch statistics, in elementary ops."""
  mean, var = tf.nn.moments(x, [0, 1, 2])
  activations = tf.nn.relu((x - mean) / tf.sqrt(var + epsilon) * gamma + beta)
  kernel = direction * gain / tf.norm(tf.reshape(direction, [-1, direction.shape[-1]]),
                                      axis=0)
  return tf.nn.conv2d(activations, kernel, 1, "SAME") + bias, mean, var


@pytest.mark.parametrize("compiled", [False, True])
def test_memory_saving_relu_conv_has_the_gradient_of_the_plain_math(compiled):
  # BatchNorm.relu_conv recomputes relu(bn(x)) in its backward pass; in tf.function the
  # oneDNN rewrites apply to its kernels, so both modes are checked.
  norm = nets.BatchNorm(momentum=0.0, epsilon=1e-3)
  norm.build((None, 5, 5, 4))
  conv = nets.WeightNormConv2D(3, use_bias=True)
  conv.build((None, 5, 5, 4))
  norm.gamma.assign([1.0, 0.5, 2.0, 1.5])
  norm.beta.assign([0.1, -0.2, 0.0, 0.3])
  conv.bias.assign([0.1, 0.2, -0.3])
  x = tf.random.stateless_normal([6, 5, 5, 4], [1, 1]) * 2.0 + 0.5
  weights = tf.random.stateless_normal([6, 5, 5, 3], [2, 2])
  variables = [norm.gamma, norm.beta, conv.direction, conv.gain, conv.bias]
  tensors = [tf.convert_to_tensor(v) for v in variables]

  def gradients():
    with tf.GradientTape() as tape:
      tape.watch(x)
      outputs = norm.relu_conv(x, conv, training=True)
      loss = tf.reduce_sum(outputs * weights)
    return [outputs] + tape.gradient(loss, [x] + [v.value for v in variables])

  def expected():
    with tf.GradientTape() as tape:
      tape.watch([x] + tensors)
      outputs, mean, var = _plain_relu_conv(x, *tensors, 1e-3)
      loss = tf.reduce_sum(outputs * weights)
    return [outputs] + tape.gradient(loss, [x] + tensors) + [mean, var]

  got = (tf.function(gradients) if compiled else gradients)()
  want = expected()
  names = ["outputs", "x", "gamma", "beta", "direction", "gain", "bias"]
  # want ends with the batch mean and variance too (checked below).
  for name, a, b in zip(names, got, want, strict=False):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
  # Momentum 0: the moving statistics are the batch's (biased variance).
  np.testing.assert_allclose(norm.moving_mean, want[-2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(norm.moving_variance, want[-1], rtol=1e-5)
  # Inference mode is the plain composition with the moving statistics.
  np.testing.assert_allclose(norm.relu_conv(x, conv), want[0], rtol=1e-4, atol=1e-4)


def test_memory_saving_relu_conv_in_bfloat16_matches_the_plain_composition():
  # Under "mixed_bfloat16" the unit runs its kernels in bfloat16 with float32 batch
  # statistics; its gradients match autodiff through the same layers' plain path.
  norm = nets.BatchNorm(momentum=0.0, epsilon=1e-3, dtype="mixed_bfloat16")
  conv = nets.WeightNormConv2D(3, use_bias=True, dtype="mixed_bfloat16")
  norm.build((None, 5, 5, 4))
  conv.build((None, 5, 5, 4))
  x = tf.cast(tf.random.stateless_normal([6, 5, 5, 4], [3, 3]) * 2.0, tf.bfloat16)
  weights = tf.random.stateless_normal([6, 5, 5, 3], [4, 4])
  variables = [norm.gamma, norm.beta, conv.direction, conv.gain, conv.bias]

  @tf.function
  def gradients(unit):
    with tf.GradientTape() as tape:
      tape.watch(x)
      outputs = unit()
      loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
    return [outputs] + tape.gradient(loss, [x] + [v.value for v in variables])

  got = gradients(lambda: norm.relu_conv(x, conv, training=True))
  want = gradients(lambda: conv(tf.nn.relu(norm(x, training=True))))
  names = ["outputs", "x", "gamma", "beta", "direction", "gain", "bias"]
  for name, a, b in zip(names, got, want, strict=True):
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    scale = float(tf.reduce_max(tf.abs(b)))
    assert float(tf.reduce_max(tf.abs(a - b))) <= 2e-2 * scale + 1e-3, name


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_relu_grad_is_tensorflows_in_both_precisions(dtype):
  # bfloat16 goes through XLA; the values must be TF's own ReluGrad's (zeros where
  # features <= 0, the incoming gradient elsewhere), eager and inside tf.function.
  gradients = tf.cast(tf.random.stateless_normal([4, 6, 6, 8], [5, 1]), dtype)
  features = tf.nn.relu(tf.cast(tf.random.stateless_normal([4, 6, 6, 8], [5, 2]),
                                dtype))

  def as_float(t):
    return tf.cast(t, tf.float32)

  want = as_float(tf.raw_ops.ReluGrad(gradients=gradients, features=features))
  expected = tf.where(as_float(features) > 0, as_float(gradients), 0.0)
  np.testing.assert_array_equal(want, expected)
  for fn in (recompute.relu_grad, tf.function(recompute.relu_grad)):
    got = fn(gradients, features)
    assert got.dtype == dtype
    np.testing.assert_array_equal(as_float(got), want)


def test_coupling_resnet_starts_at_zero_and_rejects_bad_sizes():
  net = nets.CouplingResNet(2, num_filters=8, num_blocks=2)
  net.build((None, 4, 4, 3))
  s, t = net(tf.random.stateless_normal([2, 4, 4, 3], [9, 9]))
  assert s.shape == t.shape == (2, 4, 4, 2)
  np.testing.assert_array_equal(s, 0.0)
  np.testing.assert_array_equal(t, 0.0)
  assert len(net.weight_scale_variables) == 2 + 2 * 2 + 1
  with pytest.raises(ValueError, match="positive"):
    nets.CouplingResNet(0, num_filters=8, num_blocks=1)


def test_residual_dropout_zeroes_a_share_and_rescales_the_rest():
  """With the second convolution replaced by the identity, a block without batch norm
  is x + relu(drop(h)), h = conv_in(relu(x)): in training mode each unit of relu(h)
  is 0 or relu(h) / (1 - rate), zero for about `rate` of them; otherwise relu(h)."""
  rate = 0.25
  block = nets.ResidualBlock(8, use_batch_norm=False, dropout_rate=rate)
  block.build((None, 8, 8, 8))
  block.conv_out = lambda inputs: inputs  # the output is then x + relu(drop(h))
  x = tf.random.stateless_normal([16, 8, 8, 8], [4, 4])
  kept = tf.nn.relu(block.conv_in(tf.nn.relu(x))).numpy()
  np.testing.assert_allclose(block(x) - x, kept, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(block(x, training=nets.ESTIMATE_STATISTICS) - x, kept,
                             rtol=1e-6, atol=1e-6)
  out = (block(x, training=True) - x).numpy()
  live = kept > 1e-3
  zeroed = np.abs(out[live]) < 1e-6
  # About 4,000 live units: the zeroed share is within 5 standard errors of the rate.
  assert abs(zeroed.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / live.sum())
  np.testing.assert_allclose(out[live][~zeroed], kept[live][~zeroed] / (1 - rate),
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="dropout_rate"):
    nets.CouplingResNet(2, num_filters=8, num_blocks=1, dropout_rate=1.0)
  assert nets.CouplingResNet.from_config(nets.CouplingResNet(
      2, 8, 1, dropout_rate=0.1).get_config()).dropout_rate == 0.1


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("cpu", [True, False])
def test_both_kernel_paths_have_tensorflows_own_gradient(cpu, dtype):
  # The CPU path (reserve_space_3 left out, bfloat16 ReluGrad through XLA) and the
  # plain path other devices take (all reserve spaces, TF's ReluGrad), both run here
  # on the CPU, against TF's own gradient of FusedBatchNormV3 -> ReLU -> conv.
  x = tf.cast(tf.random.stateless_normal([6, 5, 5, 4], [6, 1]) * 2.0 + 0.5, dtype)
  gamma = tf.constant([1.0, 0.5, 2.0, 1.5])
  beta = tf.constant([0.1, -0.2, 0.0, 0.3])
  kernel = tf.cast(tf.random.stateless_normal([3, 3, 4, 3], [6, 2]), dtype)
  weights = tf.random.stateless_normal([6, 5, 5, 3], [6, 3])
  inputs = [x, gamma, beta, kernel]

  @tf.function
  def gradients(unit):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      outputs = unit(*inputs)
      loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
    return [outputs] + tape.gradient(loss, inputs)

  def tensorflows(x, gamma, beta, kernel):
    empty = tf.constant([], tf.float32)
    normalized = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=1e-3,
        is_training=True)[0]
    return tf.nn.conv2d(tf.nn.relu(normalized), kernel, 1, "SAME")

  got = gradients(lambda *a: recompute.relu_batch_norm_conv(*a, 1e-3, cpu=cpu)[0])
  want = gradients(tensorflows)
  tolerance = 1e-4 if dtype == tf.float32 else 2e-2
  for name, a, b in zip(["outputs", "x", "gamma", "beta", "kernel"], got, want,
                        strict=True):
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    scale = float(tf.reduce_max(tf.abs(b)))
    assert float(tf.reduce_max(tf.abs(a - b))) <= tolerance * scale + 1e-4, name


def test_the_cpu_choices_key_on_the_device():
  with tf.device("/cpu:0"):
    on_cpu = tf.constant(1.0)
  assert recompute.on_cpu(on_cpu)
  assert not recompute.on_cpu(_tensor_on("/job:localhost/task:0/device:GPU:0"))
  assert recompute.on_cpu(_tensor_on("/device:CPU:0"))


def _tensor_on(device):
  """A graph tensor placed on `device` (which need not exist: it is never run)."""
  with tf.Graph().as_default():
    with tf.device(device):
      return tf.constant(1.0)
