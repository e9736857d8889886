"""Batch normalisation of the s/t networks' feature maps (a Keras layer)."""

import keras
import tensorflow as tf

from realnvp_tf.model.nets import batch_statistics
from realnvp_tf.model.nets import recompute


class BatchNorm(keras.layers.Layer):
  """Batch normalisation of [B, H, W, C] feature maps, with learned scale and offset.

  Training mode normalises with the statistics of the batch (of the global batch under
  a distribution strategy, so replicas agree) and updates the moving averages;
  inference mode uses the moving averages (see `batch_statistics.ESTIMATE_STATISTICS`
  for the third mode). On one replica both run TF's fused kernel, one pass over the
  data each way, rather than a chain of elementwise ops.
  """

  def __init__(self, momentum=batch_statistics.MOMENTUM,
               epsilon=batch_statistics.EPSILON, **kwargs):
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
    if batch_statistics.single_replica():
      outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
      variance = batch_statistics.biased_variance(unbiased, inputs)
    else:
      mean, variance = batch_statistics.batch_moments(tf.cast(inputs, tf.float32))
      outputs = tf.cast(tf.nn.batch_normalization(
          tf.cast(inputs, tf.float32), mean, variance, self.beta, self.gamma,
          self.epsilon), inputs.dtype)
    batch_statistics.update_moving_averages(self, mean, variance, training)
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
    if not training or not batch_statistics.single_replica():
      return conv(tf.nn.relu(self(inputs, training=training)))
    outputs, mean, variance = recompute.relu_batch_norm_conv(
        inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
        conv.kernel(inputs.dtype), self.epsilon)
    batch_statistics.update_moving_averages(self, mean, variance, training)
    return conv.add_bias(outputs)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, epsilon=self.epsilon)
    return config
