"""Weight-normalised convolution (Salimans & Kingma, 2016), the s/t networks' conv."""

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
