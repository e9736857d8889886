"""Training-mode batch norm -> ReLU -> convolution whose gradient recomputes the
activations instead of keeping them (most of a training step's memory otherwise)."""

import tensorflow as tf

from realnvp_tf.model.nets import batch_statistics


def on_cpu(tensor):
  """Whether `tensor` is on a CPU (its device, or with none set yet, TensorFlow's
  default placement: a GPU when there is one). The kernels' CPU-specific choices
  (`relu_batch_norm_conv`, `relu_grad`) key on it; any other device gets the plain
  path, TensorFlow's own gradient's kernels and inputs."""
  if tensor.device:
    return tf.DeviceSpec.from_string(tensor.device).device_type in (None, "CPU")
  return not tf.config.list_logical_devices("GPU")


def relu_batch_norm_conv(inputs, gamma, beta, kernel, epsilon, cpu=None):
  """Training-mode `conv(relu(batch_norm(inputs)))`, batch mean, biased variance.

  The gradient (with respect to inputs, gamma, beta and kernel) recomputes
  `relu(batch_norm(inputs))` from the saved statistics instead of keeping it, then
  runs the same kernels TF's own gradients would (conv backprops, ReluGrad,
  FusedBatchNormGradV3 on the forward's reserve spaces). The statistics outputs are
  for the moving averages only and get no gradient.

  `cpu` (default: `on_cpu(inputs)`) selects the two CPU-specific choices: the
  batch norm's reserve_space_3 is not kept (oneDNN's gradient never reads it; cuDNN's
  can), and the bfloat16 ReluGrad goes through XLA (`relu_grad`). With `cpu=False`
  the gradient gets all three reserve spaces and TF's ReluGrad, as TF's own does.
  """
  strides = [1, 1, 1, 1]
  cpu = on_cpu(inputs) if cpu is None else cpu

  @tf.custom_gradient
  def forward(x, gamma, beta, kernel):
    empty = tf.constant([], tf.float32)
    # On a CPU reserve_space_3 is not kept: with the ReLU fused in (oneDNN), it holds
    # a ReLU mask of an eighth of the input's size that FusedBatchNormGradV3 (which
    # does not fuse the ReLU) never reads.
    normalized, mean, unbiased, reserve_1, reserve_2, reserve_3 = (
        tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=empty,
                                    variance=empty, epsilon=epsilon, is_training=True))
    reserve_3 = empty if cpu else reserve_3
    outputs = tf.nn.conv2d(tf.nn.relu(normalized), kernel, strides, "SAME")
    variance = batch_statistics.biased_variance(unbiased, x)

    def grad(d_outputs, *unused_statistics_grads):
      # Not before the gradient arrives: the executor would otherwise recompute as soon
      # as x is ready, in the forward pass, and keep the result just the same.
      with tf.control_dependencies([d_outputs]):
        x_now = tf.identity(x)
      activations = tf.nn.relu(tf.raw_ops.FusedBatchNormV3(
          x=x_now, scale=gamma, offset=beta, mean=mean, variance=variance,
          epsilon=epsilon, is_training=False)[0])
      d_kernel = tf.raw_ops.Conv2DBackpropFilter(
          input=activations, filter_sizes=tf.shape(kernel), out_backprop=d_outputs,
          strides=strides, padding="SAME")
      d_activations = tf.raw_ops.Conv2DBackpropInput(
          input_sizes=tf.shape(x), filter=kernel, out_backprop=d_outputs,
          strides=strides, padding="SAME")
      d_normalized = relu_grad(d_activations, activations,
                               compiled=cpu and d_activations.dtype == tf.bfloat16)
      d_x, d_gamma, d_beta = tf.raw_ops.FusedBatchNormGradV3(
          y_backprop=d_normalized, x=x, scale=gamma, reserve_space_1=reserve_1,
          reserve_space_2=reserve_2, reserve_space_3=reserve_3, epsilon=epsilon,
          is_training=True)[:3]
      return d_x, d_gamma, d_beta, d_kernel

    return (outputs, mean, variance), grad

  return forward(inputs, gamma, beta, kernel)


def relu_grad(gradients, features, compiled=None):
  """The gradient of ReLU: `gradients` where `features > 0`, else 0.

  In bfloat16 on a CPU it runs through XLA (`compiled`: by default, bfloat16
  `gradients` that are `on_cpu`). TF's prebuilt CPU kernels are compiled for a
  baseline instruction set, and their bfloat16 elementwise arithmetic converts
  element by element; XLA compiles for the machine it runs on, and was faster in
  bfloat16 and slower in float32 (docs/performance.md has the measurements), so
  float32, and any other device, keep TF's kernel.
  """
  if compiled is None:
    compiled = gradients.dtype == tf.bfloat16 and on_cpu(gradients)
  if compiled:
    return _compiled_relu_grad(gradients, features)
  return tf.raw_ops.ReluGrad(gradients=gradients, features=features)


@tf.function(jit_compile=True)
def _compiled_relu_grad(gradients, features):
  return tf.raw_ops.ReluGrad(gradients=gradients, features=features)
