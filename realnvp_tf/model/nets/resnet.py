"""The s/t network of a coupling layer: a convolutional ResNet (Keras 3 layers).

The paper's s and t functions are deep convolutional residual networks with weight
normalisation (Salimans & Kingma, 2016) and batch normalisation. One network computes
both: its last convolution has `2 * out_channels` outputs, split into a raw log-scale
and a shift, and the log-scale is squashed as `s = scale * tanh(raw)` with a learned
per-channel `scale`.

The last convolution starts with zero gain, so every coupling starts as the identity.

Optional dropout between the two convolutions of each residual block (as in Flow++,
Ho et al., 2019) regularises networks trained on few images; it acts in training mode
only, so the flow an evaluation or an export computes is deterministic and exact.
"""

import keras
import tensorflow as tf

from realnvp_tf.model.nets import batch_statistics
from realnvp_tf.model.nets.batch_norm import BatchNorm
from realnvp_tf.model.nets.weight_norm import WeightNormConv2D


def _normalization(use_batch_norm, momentum, epsilon, dtype, name):
  if not use_batch_norm:
    return keras.layers.Identity(name=name, dtype=dtype)
  return BatchNorm(momentum=momentum, epsilon=epsilon, name=name, dtype=dtype)


def _relu_conv(norm, conv, inputs, training):
  """conv(relu(norm(inputs))), through BatchNorm.relu_conv's memory saving if it can."""
  if isinstance(norm, BatchNorm):
    return norm.relu_conv(inputs, conv, training=training)
  return conv(tf.nn.relu(norm(inputs, training=training)))


def check_dropout_rate(rate):
  """Raises ValueError unless `rate` is in [0, 1) (`RealNVPConfig` calls it too)."""
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1) (0: no dropout); got {rate}.")


class ResidualBlock(keras.layers.Layer):
  """`x + conv(relu(bn(drop(conv(relu(bn(x)))))))`, pre-activation as in the paper;
  `drop` is dropout at `dropout_rate` in training mode (identity at 0, the default).

  The dropout draws from TensorFlow's stateful random ops (seeded by the global seed),
  not from a Keras seed generator: no variable is added, so checkpoints and exports are
  the same with and without it.
  """

  def __init__(self, filters, use_batch_norm=True,
               batch_norm_momentum=batch_statistics.MOMENTUM,
               batch_norm_epsilon=batch_statistics.EPSILON, dropout_rate=0.0, **kwargs):
    super().__init__(**kwargs)
    check_dropout_rate(dropout_rate)
    self.dropout_rate = float(dropout_rate)
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
    # Only in the training step: not in inference, and not while batch-norm
    # statistics are re-estimated for inference (training=ESTIMATE_STATISTICS).
    if self.dropout_rate and training is True:
      h = tf.nn.dropout(h, self.dropout_rate)
    h = _relu_conv(self.norm_out, self.conv_out, h, training)
    return inputs + h

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, use_batch_norm=self.use_batch_norm,
                  batch_norm_momentum=self.batch_norm_momentum,
                  batch_norm_epsilon=self.batch_norm_epsilon,
                  dropout_rate=self.dropout_rate)
    return config


class CouplingResNet(keras.layers.Layer):
  """The s/t network of an affine coupling: returns `(s, t)`, each `out_channels` wide.

  conv -> `num_blocks` residual blocks -> bn -> relu -> conv to `2 * out_channels`,
  then `s = scale * tanh(raw_s)` with `scale` learned per channel. `dropout_rate`: the
  residual blocks' dropout (training mode only).

  With the Keras dtype policy "mixed_bfloat16" (or "mixed_float16") the convolutions
  and normalisations run in that type (variables stay float32); `s` and `t` are
  returned in float32.
  """

  def __init__(self, out_channels, num_filters, num_blocks, use_batch_norm=True,
               batch_norm_momentum=batch_statistics.MOMENTUM,
               batch_norm_epsilon=batch_statistics.EPSILON, dropout_rate=0.0, **kwargs):
    super().__init__(**kwargs)
    check_dropout_rate(dropout_rate)
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
    self.dropout_rate = float(dropout_rate)
    norm_args = (self.use_batch_norm, self.batch_norm_momentum, self.batch_norm_epsilon)
    policy = self.dtype_policy
    # No bias before batch norm (see ResidualBlock).
    self.conv_in = WeightNormConv2D(self.num_filters, use_bias=not self.use_batch_norm,
                                    name="conv_in", dtype=policy)
    self.blocks = [ResidualBlock(self.num_filters, *norm_args,
                                 dropout_rate=self.dropout_rate, name=f"block_{i}",
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
            + [conv for block in self.blocks
               for conv in (block.conv_in, block.conv_out)]
            + [self.conv_out])

  @property
  def batch_norms(self):
    """Every BatchNorm of the network, input to output (none without batch norm)."""
    norms = [norm for block in self.blocks for norm in (block.norm_in, block.norm_out)]
    return [norm for norm in norms + [self.norm_out] if isinstance(norm, BatchNorm)]

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
                  batch_norm_epsilon=self.batch_norm_epsilon,
                  dropout_rate=self.dropout_rate)
    return config
