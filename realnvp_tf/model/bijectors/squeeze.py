"""The squeeze operation: 2x2 space-to-depth and back."""

import tensorflow as tf
import tensorflow_probability as tfp

from realnvp_tf.model.bijectors import fused

tfb = tfp.bijectors

# space_to_depth lays out each 2x2 block as channel groups (0,0), (0,1), (1,0), (1,1).
# Reordered to (0,0), (1,1), (0,1), (1,0), the first half of the squeezed channels
# holds one checkerboard colour and the second half the other, so a channel-wise split
# after a squeeze is complementary to the checkerboard splits before it.
_TO_CHECKERBOARD_ORDER = (0, 3, 1, 2)
_FROM_CHECKERBOARD_ORDER = (0, 2, 3, 1)


def _permute_groups(x, order):
  height, width, channels = x.shape[-3:]
  groups = tf.reshape(x, [-1, height, width, 4, channels // 4])
  groups = tf.gather(groups, order, axis=3)
  return tf.reshape(groups, [-1, height, width, channels])


class Squeeze(tfb.Bijector):
  """Trades space for channels: [H, W, C] <-> [H/2, W/2, 4C] (paper section 3.6).

  The paper's f squeezes, so in TFP's direction `inverse` squeezes (image side to
  latent side) and `forward` unsqueezes. Each 2x2 block of pixels becomes one pixel
  with four times the channels, ordered so that the first half of the new channels
  comes from the pixels with (i + j) even and the second half from (i + j) odd. A
  permutation: the log-det is zero.
  """

  def __init__(self, validate_args=False, name="squeeze"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      super().__init__(
          forward_min_event_ndims=fused.IMAGE_EVENT_NDIMS, is_constant_jacobian=True,
          validate_args=validate_args, parameters=parameters, name=name)

  def _inverse(self, y, **kwargs):
    height, width = y.shape[-3], y.shape[-2]
    if height % 2 or width % 2:
      raise ValueError(
          f"Squeeze needs even height and width; got image shape {y.shape[-3:]}.")
    return _permute_groups(tf.nn.space_to_depth(y, 2), _TO_CHECKERBOARD_ORDER)

  def _forward(self, x, **kwargs):
    if x.shape[-1] % 4:
      raise ValueError(
          f"Unsqueezing needs a channel count divisible by 4; got shape "
          f"{x.shape[-3:]}.")
    return tf.nn.depth_to_space(_permute_groups(x, _FROM_CHECKERBOARD_ORDER), 2)

  def _inverse_log_det_jacobian(self, y, **kwargs):
    return tf.zeros([], y.dtype)

  def _forward_event_shape(self, input_shape):
    height, width, channels = input_shape[-3:]
    return input_shape[:-3].concatenate(
        [_times(height, 2), _times(width, 2), _div(channels, 4)])

  def _inverse_event_shape(self, output_shape):
    height, width, channels = output_shape[-3:]
    return output_shape[:-3].concatenate(
        [_div(height, 2), _div(width, 2), _times(channels, 4)])

  def _forward_event_shape_tensor(self, input_shape):
    return tf.concat([input_shape[:-3], input_shape[-3:] * [2, 2, 1] // [1, 1, 4]], 0)

  def _inverse_event_shape_tensor(self, output_shape):
    return tf.concat([output_shape[:-3], output_shape[-3:] * [1, 1, 4] // [2, 2, 1]], 0)


def _times(dim, factor):
  return None if dim is None else dim * factor


def _div(dim, factor):
  return None if dim is None else dim // factor
