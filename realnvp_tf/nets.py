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

  def __init__(self, filters, kernel_size=3, gain_initializer="ones", **kwargs):
    super().__init__(**kwargs)
    if filters <= 0 or kernel_size <= 0:
      raise ValueError(
          f"filters and kernel_size must be positive; got {filters}, {kernel_size}.")
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.gain_initializer = keras.initializers.get(gain_initializer)

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    self.direction = self.add_weight(
        name="direction",
        shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
        initializer=keras.initializers.RandomNormal(stddev=0.05))
    self.gain = self.add_weight(
        name="gain", shape=(self.filters,), initializer=self.gain_initializer)
    self.bias = self.add_weight(
        name="bias", shape=(self.filters,), initializer="zeros")

  def call(self, inputs):
    direction = tf.convert_to_tensor(self.direction)
    norm = tf.sqrt(tf.reduce_sum(tf.square(direction), axis=[0, 1, 2]))
    kernel = direction * (self.gain / norm)
    outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
    return tf.nn.bias_add(outputs, self.bias)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  gain_initializer=keras.initializers.serialize(self.gain_initializer))
    return config


def _normalization(use_batch_norm, momentum, epsilon, name):
  if not use_batch_norm:
    return keras.layers.Identity(name=name)
  # synchronized: replicas of a distribution strategy share the batch statistics, so
  # the moving averages stay identical on every replica.
  return keras.layers.BatchNormalization(
      momentum=momentum, epsilon=epsilon, synchronized=True, name=name)


class ResidualBlock(keras.layers.Layer):
  """`x + conv(relu(bn(conv(relu(bn(x))))))`, pre-activation as in the paper."""

  def __init__(self, filters, use_batch_norm=True, batch_norm_momentum=0.9,
               batch_norm_epsilon=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.use_batch_norm = bool(use_batch_norm)
    self.batch_norm_momentum = float(batch_norm_momentum)
    self.batch_norm_epsilon = float(batch_norm_epsilon)
    norm_args = (self.use_batch_norm, self.batch_norm_momentum, self.batch_norm_epsilon)
    self.norm_in = _normalization(*norm_args, name="norm_in")
    self.conv_in = WeightNormConv2D(self.filters, name="conv_in")
    self.norm_out = _normalization(*norm_args, name="norm_out")
    self.conv_out = WeightNormConv2D(self.filters, name="conv_out")

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
    h = self.conv_in(tf.nn.relu(self.norm_in(inputs, training=training)))
    h = self.conv_out(tf.nn.relu(self.norm_out(h, training=training)))
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
    self.conv_in = WeightNormConv2D(self.num_filters, name="conv_in")
    self.blocks = [ResidualBlock(self.num_filters, *norm_args, name=f"block_{i}")
                   for i in range(self.num_blocks)]
    self.norm_out = _normalization(*norm_args, name="norm_out")
    # Zero gain: the network outputs s = t = 0 until trained, so the coupling starts
    # as the identity.
    self.conv_out = WeightNormConv2D(
        2 * self.out_channels, gain_initializer="zeros", name="conv_out")

  def build(self, input_shape):
    self.conv_in.build(input_shape)
    hidden_shape = tuple(input_shape[:-1]) + (self.num_filters,)
    for block in self.blocks:
      block.build(hidden_shape)
    self.norm_out.build(hidden_shape)
    self.conv_out.build(hidden_shape)
    self.scale = self.add_weight(
        name="scale", shape=(self.out_channels,), initializer="ones")

  def call(self, inputs, training=False):
    h = self.conv_in(inputs)
    for block in self.blocks:
      h = block(h, training=training)
    h = self.conv_out(tf.nn.relu(self.norm_out(h, training=training)))
    raw_log_scale, shift = tf.split(h, 2, axis=-1)
    return self.scale * tf.tanh(raw_log_scale), shift

  @property
  def weight_scale_variables(self):
    """The paper's "weight scale parameters": weight-norm gains and the tanh scale.

    These get the L2 penalty (5e-5 in the paper).
    """
    convs = [self.conv_in, self.conv_out]
    convs += [conv for block in self.blocks for conv in (block.conv_in, block.conv_out)]
    return [conv.gain for conv in convs] + [self.scale]

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, num_filters=self.num_filters,
                  num_blocks=self.num_blocks, use_batch_norm=self.use_batch_norm,
                  batch_norm_momentum=self.batch_norm_momentum,
                  batch_norm_epsilon=self.batch_norm_epsilon)
    return config
