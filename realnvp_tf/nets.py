"""Keras 3 layers for the coupling layers' s/t networks.

The paper's s and t functions are deep convolutional residual networks with weight
normalisation (Salimans & Kingma, 2016) and batch normalisation. One network computes
both: its last convolution has `2 * out_channels` outputs, split into a raw log-scale and
a shift, and the log-scale is squashed as `s = scale * tanh(raw)` with a learned
per-channel `scale`.

The last convolution starts with zero gain, so every coupling starts as the identity.
"""

import keras
import tensorflow as tf


class WeightNormConv2D(keras.layers.Layer):
  """Convolution with weight normalisation: `w = g * v / ||v||`.

  The norm is taken per output channel over (kernel height, kernel width, input
  channels), so `g` is the norm of each output channel's filter and is learned
  separately from its direction `v`.
  """

  def __init__(self, filters, kernel_size=3, gain_initializer="ones", use_bias=True,
               **kwargs):
    super().__init__(**kwargs)
    self.use_bias = bool(use_bias)
    if filters <= 0 or kernel_size <= 0:
      raise ValueError(
          f"filters and kernel_size must be positive; got {filters}, {kernel_size}.")
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.gain_initializer = keras.initializers.get(gain_initializer)

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    # autocast=False: the weight norm is computed in float32 whatever the compute
    # dtype; only the finished kernel is cast.
    self.direction = self.add_weight(
        name="direction",
        shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
        initializer=keras.initializers.RandomNormal(stddev=0.05), autocast=False)
    self.gain = self.add_weight(
        name="gain", shape=(self.filters,), initializer=self.gain_initializer,
        autocast=False)
    self.bias = self.add_weight(
        name="bias", shape=(self.filters,), initializer="zeros",
        autocast=False) if self.use_bias else None

  def kernel(self, dtype):
    """The convolution kernel `g * v / ||v||`, computed in float32, cast to `dtype`."""
    direction = tf.convert_to_tensor(self.direction)
    norm = tf.sqrt(tf.reduce_sum(tf.square(direction), axis=[0, 1, 2]))
    return tf.cast(direction * (self.gain / norm), dtype)

  def add_bias(self, outputs):
    if self.bias is None:
      return outputs
    return tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype))

  def call(self, inputs):
    return self.add_bias(
        tf.nn.conv2d(inputs, self.kernel(inputs.dtype), strides=1, padding="SAME"))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  use_bias=self.use_bias,
                  gain_initializer=keras.initializers.serialize(self.gain_initializer))
    return config


def batch_moments(x):
  """Per-channel mean and (biased) variance of a [B, H, W, C] batch, over all replicas.

  Under a distribution strategy every replica gets the statistics of the global batch
  (as one device would), so moving averages stay identical on all replicas. Assumes
  equal per-replica batches (drop_remainder in training).
  """
  axes = [0, 1, 2]
  mean = tf.reduce_mean(x, axis=axes)
  if _single_replica():
    return mean, tf.reduce_mean(tf.square(x - mean), axis=axes)
  context = tf.distribute.get_replica_context()
  mean = context.all_reduce(tf.distribute.ReduceOp.MEAN, mean)
  variance = tf.reduce_mean(tf.square(x - mean), axis=axes)
  return mean, context.all_reduce(tf.distribute.ReduceOp.MEAN, variance)


# The `training` argument of the batch norms (and of every layer and bijector that
# passes it on) takes three values: False (inference: the moving averages), True
# (training: the batch's statistics, and the moving averages move towards them by
# 1 - momentum), and ESTIMATE_STATISTICS (the batch's statistics, which replace the
# moving averages outright: `batch_norm_estimation` averages them over batches).
ESTIMATE_STATISTICS = "estimate_statistics"


def update_moving_averages(norm, mean, variance, training=True):
  """Moves a batch norm's statistics towards the batch's: by 1 - momentum in training
  mode; all the way (replaced) when estimating statistics.

  `norm` has `momentum`, `moving_mean` and `moving_variance` (BatchNorm here, the
  flow's FlowBatchNorm).
  """
  mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
  if training == ESTIMATE_STATISTICS:
    norm.moving_mean.assign(mean)
    norm.moving_variance.assign(variance)
    return
  decay = 1.0 - norm.momentum
  norm.moving_mean.assign_sub(decay * (norm.moving_mean - mean))
  norm.moving_variance.assign_sub(decay * (norm.moving_variance - variance))


def _single_replica():
  context = tf.distribute.get_replica_context()
  return context is None or context.num_replicas_in_sync == 1


class BatchNorm(keras.layers.Layer):
  """Batch normalisation of [B, H, W, C] feature maps, with learned scale and offset.

  Training mode normalises with the statistics of the batch (of the global batch under
  a distribution strategy, so replicas agree) and updates the moving averages;
  inference mode uses the moving averages (see ESTIMATE_STATISTICS for the third mode). On one replica both run TF's fused kernel,
  one pass over the data each way, rather than a chain of elementwise ops.
  """

  def __init__(self, momentum=0.9, epsilon=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    channels = (int(input_shape[-1]),)
    # Parameters and statistics stay float32 under bfloat16 compute (autocast=False):
    # the fused kernel takes bfloat16 activations with float32 statistics.
    self.gamma = self.add_weight(name="gamma", shape=channels, initializer="ones",
                                 autocast=False)
    self.beta = self.add_weight(name="beta", shape=channels, initializer="zeros",
                                autocast=False)
    self.moving_mean = self.add_weight(name="moving_mean", shape=channels,
                                       initializer="zeros", trainable=False,
                                       aggregation="mean", autocast=False)
    self.moving_variance = self.add_weight(name="moving_variance", shape=channels,
                                           initializer="ones", trainable=False,
                                           aggregation="mean", autocast=False)

  def call(self, inputs, training=False):
    if not training:
      outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, mean=self.moving_mean,
          variance=self.moving_variance, epsilon=self.epsilon, is_training=False)
      return outputs
    if _single_replica():
      outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
      variance = _biased(unbiased, inputs)
    else:
      mean, variance = batch_moments(tf.cast(inputs, tf.float32))
      outputs = tf.cast(tf.nn.batch_normalization(
          tf.cast(inputs, tf.float32), mean, variance, self.beta, self.gamma,
          self.epsilon), inputs.dtype)
    update_moving_averages(self, mean, variance, training)
    return outputs

  def relu_conv(self, inputs, conv, training=False):
    """`conv(relu(self(inputs)))` (conv a WeightNormConv2D), in less memory.

    Backpropagating through a convolution needs its input, so plain autodiff keeps
    `relu(bn(x))` from the forward to the backward pass beside `x` (which the batch
    norm's own gradient needs): two feature maps per normalisation, most of a
    training step's memory. In single-replica training this keeps only `x` and the
    per-channel batch statistics and recomputes `relu(bn(x))` in the backward pass
    (one elementwise pass; the gradient is the same function's). Elsewhere (inference,
    synchronised multi-replica statistics) it is the plain composition.
    """
    if not training or not _single_replica():
      return conv(tf.nn.relu(self(inputs, training=training)))
    outputs, mean, variance = _relu_batch_norm_conv(
        inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
        conv.kernel(inputs.dtype), self.epsilon)
    update_moving_averages(self, mean, variance, training)
    return conv.add_bias(outputs)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, epsilon=self.epsilon)
    return config


def _biased(unbiased_variance, inputs):
  count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), unbiased_variance.dtype)
  return unbiased_variance * (count - 1.0) / count


def _relu_batch_norm_conv(inputs, gamma, beta, kernel, epsilon):
  """Training-mode `conv(relu(batch_norm(inputs)))`, batch mean, biased variance.

  The gradient (with respect to inputs, gamma, beta and kernel) recomputes
  `relu(batch_norm(inputs))` from the saved statistics instead of keeping it, then
  runs the same kernels TF's own gradients would (conv backprops, ReluGrad (through
  XLA in bfloat16, see `_relu_grad`), FusedBatchNormGradV3 on the forward's reserve
  spaces). The statistics outputs are for the moving averages only and get no
  gradient.
  """
  strides = [1, 1, 1, 1]

  @tf.custom_gradient
  def forward(x, gamma, beta, kernel):
    empty = tf.constant([], tf.float32)
    # reserve_space_3 is not kept: with the ReLU fused in (oneDNN), it holds a
    # ReLU mask of an eighth of the input's size that FusedBatchNormGradV3 (which
    # does not fuse the ReLU) never reads.
    normalized, mean, unbiased, reserve_1, reserve_2, _ = (
        tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=empty,
                                    variance=empty, epsilon=epsilon, is_training=True))
    outputs = tf.nn.conv2d(tf.nn.relu(normalized), kernel, strides, "SAME")
    variance = _biased(unbiased, x)

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
      d_normalized = _relu_grad(d_activations, activations)
      d_x, d_gamma, d_beta = tf.raw_ops.FusedBatchNormGradV3(
          y_backprop=d_normalized, x=x, scale=gamma, reserve_space_1=reserve_1,
          reserve_space_2=reserve_2, reserve_space_3=empty, epsilon=epsilon,
          is_training=True)[:3]
      return d_x, d_gamma, d_beta, d_kernel

    return (outputs, mean, variance), grad

  return forward(inputs, gamma, beta, kernel)


def _relu_grad(gradients, features):
  """The gradient of ReLU: `gradients` where `features > 0`, else 0.

  In bfloat16 it runs through XLA. TF's prebuilt CPU kernels are compiled for a
  baseline instruction set, and their bfloat16 elementwise arithmetic converts
  element by element; XLA compiles for the machine it runs on, and was faster in
  bfloat16 and slower in float32 (docs/performance.md has the measurements), so
  float32 keeps TF's kernel.
  """
  if gradients.dtype == tf.bfloat16:
    return _compiled_relu_grad(gradients, features)
  return tf.raw_ops.ReluGrad(gradients=gradients, features=features)


@tf.function(jit_compile=True)
def _compiled_relu_grad(gradients, features):
  return tf.raw_ops.ReluGrad(gradients=gradients, features=features)


def _normalization(use_batch_norm, momentum, epsilon, dtype, name):
  if not use_batch_norm:
    return keras.layers.Identity(name=name, dtype=dtype)
  return BatchNorm(momentum=momentum, epsilon=epsilon, name=name, dtype=dtype)


def _relu_conv(norm, conv, inputs, training):
  """conv(relu(norm(inputs))), through BatchNorm.relu_conv's memory saving if it can."""
  if isinstance(norm, BatchNorm):
    return norm.relu_conv(inputs, conv, training=training)
  return conv(tf.nn.relu(norm(inputs, training=training)))


class ResidualBlock(keras.layers.Layer):
  """`x + conv(relu(bn(conv(relu(bn(x))))))`, pre-activation as in the paper."""

  def __init__(self, filters, use_batch_norm=True, batch_norm_momentum=0.9,
               batch_norm_epsilon=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.use_batch_norm = bool(use_batch_norm)
    self.batch_norm_momentum = float(batch_norm_momentum)
    self.batch_norm_epsilon = float(batch_norm_epsilon)
    norm_args = (self.use_batch_norm, self.batch_norm_momentum, self.batch_norm_epsilon,
                 self.dtype_policy)
    self.norm_in = _normalization(*norm_args, name="norm_in")
    # Every feature map of the residual stream reaches the output only through a batch
    # norm, which removes per-channel shifts: with batch norm on, a bias would be dead
    # weight (and two extra passes over the activations per convolution).
    use_bias = not self.use_batch_norm
    self.conv_in = WeightNormConv2D(self.filters, use_bias=use_bias, name="conv_in",
                                    dtype=self.dtype_policy)
    self.norm_out = _normalization(*norm_args, name="norm_out")
    self.conv_out = WeightNormConv2D(self.filters, use_bias=use_bias, name="conv_out",
                                     dtype=self.dtype_policy)

  def build(self, input_shape):
    if int(input_shape[-1]) != self.filters:
      raise ValueError(
          f"ResidualBlock with {self.filters} filters needs {self.filters} input "
          f"channels; got input shape {tuple(input_shape)}.")
    self.norm_in.build(input_shape)
    self.conv_in.build(input_shape)
    self.norm_out.build(input_shape)
    self.conv_out.build(input_shape)

  def call(self, inputs, training=False):
    h = _relu_conv(self.norm_in, self.conv_in, inputs, training)
    h = _relu_conv(self.norm_out, self.conv_out, h, training)
    return inputs + h

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, use_batch_norm=self.use_batch_norm,
                  batch_norm_momentum=self.batch_norm_momentum,
                  batch_norm_epsilon=self.batch_norm_epsilon)
    return config


class CouplingResNet(keras.layers.Layer):
  """The s/t network of an affine coupling: returns `(s, t)`, each `out_channels` wide.

  conv -> `num_blocks` residual blocks -> bn -> relu -> conv to `2 * out_channels`,
  then `s = scale * tanh(raw_s)` with `scale` learned per channel.

  With the Keras dtype policy "mixed_bfloat16" the convolutions and normalisations run
  in bfloat16 (variables stay float32); `s` and `t` are returned in float32.
  """

  def __init__(self, out_channels, num_filters, num_blocks, use_batch_norm=True,
               batch_norm_momentum=0.9, batch_norm_epsilon=1e-4, **kwargs):
    super().__init__(**kwargs)
    if out_channels <= 0 or num_filters <= 0 or num_blocks < 0:
      raise ValueError(
          f"out_channels and num_filters must be positive and num_blocks >= 0; got "
          f"{out_channels}, {num_filters}, {num_blocks}.")
    self.out_channels = int(out_channels)
    self.num_filters = int(num_filters)
    self.num_blocks = int(num_blocks)
    self.use_batch_norm = bool(use_batch_norm)
    self.batch_norm_momentum = float(batch_norm_momentum)
    self.batch_norm_epsilon = float(batch_norm_epsilon)
    norm_args = (self.use_batch_norm, self.batch_norm_momentum, self.batch_norm_epsilon)
    policy = self.dtype_policy
    # No bias before batch norm (see ResidualBlock).
    self.conv_in = WeightNormConv2D(self.num_filters, use_bias=not self.use_batch_norm,
                                    name="conv_in", dtype=policy)
    self.blocks = [ResidualBlock(self.num_filters, *norm_args, name=f"block_{i}",
                                 dtype=policy) for i in range(self.num_blocks)]
    self.norm_out = _normalization(*norm_args, policy, name="norm_out")
    # Zero gain: the network outputs s = t = 0 until trained, so the coupling starts
    # as the identity.
    self.conv_out = WeightNormConv2D(
        2 * self.out_channels, gain_initializer="zeros", name="conv_out", dtype=policy)

  def build(self, input_shape):
    self.conv_in.build(input_shape)
    hidden_shape = tuple(input_shape[:-1]) + (self.num_filters,)
    for block in self.blocks:
      block.build(hidden_shape)
    self.norm_out.build(hidden_shape)
    self.conv_out.build(hidden_shape)
    self.scale = self.add_weight(
        name="scale", shape=(self.out_channels,), initializer="ones", autocast=False)

  def call(self, inputs, training=False):
    h = self.conv_in(inputs)
    for block in self.blocks:
      h = block(h, training=training)
    h = _relu_conv(self.norm_out, self.conv_out, h, training)
    # s and t leave the network in float32, whatever it computed in: the coupling
    # arithmetic and the log-det stay float32.
    raw_log_scale, shift = tf.split(tf.cast(h, tf.float32), 2, axis=-1)
    return self.scale * tf.tanh(raw_log_scale), shift

  @property
  def convs(self):
    """Every WeightNormConv2D of the network, input to output."""
    return ([self.conv_in]
            + [conv for block in self.blocks for conv in (block.conv_in, block.conv_out)]
            + [self.conv_out])

  @property
  def weight_scale_variables(self):
    """The paper's "weight scale parameters": weight-norm gains and the tanh scale.

    These get the L2 penalty (5e-5 in the paper).
    """
    return [conv.gain for conv in self.convs] + [self.scale]

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, num_filters=self.num_filters,
                  num_blocks=self.num_blocks, use_batch_norm=self.use_batch_norm,
                  batch_norm_momentum=self.batch_norm_momentum,
                  batch_norm_epsilon=self.batch_norm_epsilon)
    return config


class ClassEmbedding(keras.layers.Layer):
  """A learned vector per class, laid over every position of an image as channels.

  `call(labels, like)` maps int labels [B] and a [B, H, W, C] tensor to [B, H, W, dim]:
  row `labels[b]` of the embedding table at every position. A class-conditional
  coupling concatenates it to its network's input, so s and t depend on y.
  """

  def __init__(self, num_classes, dim, **kwargs):
    super().__init__(**kwargs)
    if num_classes <= 0 or dim <= 0:
      raise ValueError(
          f"num_classes and dim must be positive; got {num_classes}, {dim}.")
    self.num_classes = int(num_classes)
    self.dim = int(dim)

  def build(self, input_shape=None):
    del input_shape  # the table's shape depends on the classes alone
    # Unit scale, like a one-hot code: the first convolution sees y as clearly as
    # the pixels from the first step on.
    self.embeddings = self.add_weight(
        name="embeddings", shape=(self.num_classes, self.dim),
        initializer=keras.initializers.RandomNormal(stddev=1.0), autocast=False)

  def call(self, labels, like):
    # A one-hot product rather than a gather: the gradient is a dense tensor, as
    # every other gradient (tf.gather's IndexedSlices would be densified later).
    vectors = tf.matmul(tf.one_hot(labels, self.num_classes),
                        tf.convert_to_tensor(self.embeddings))
    spatial = tf.shape(like)[:-1]
    return tf.broadcast_to(vectors[:, None, None, :],
                           tf.concat([spatial, [self.dim]], 0))

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, dim=self.dim)
    return config
