"""Affine coupling layers with checkerboard and channel-wise masks."""

import tensorflow as tf

from realnvp_tf.model.bijectors import fused


def checkerboard(height, width, parity):
  """The mask b[i, j] = (i + j + parity) mod 2, as a [H, W, 1] float32 tensor."""
  rows = tf.range(height)[:, None]
  cols = tf.range(width)[None, :]
  return tf.cast((rows + cols + parity) % 2, tf.float32)[:, :, None]


class CheckerboardMask:
  """Conditions on the pixels where b = 1 and transforms those where b = 0.

  The network sees the masked image and the mask itself (so it knows which pixels
  carry information); its outputs are zeroed on the conditioning pixels, where the
  coupling then reduces to the identity.
  """

  def __init__(self, event_shape, parity):
    height, width, channels = event_shape
    self.parity = parity
    self.net_in_channels = channels + 1
    self.net_out_channels = channels
    self._mask = checkerboard(height, width, parity)

  def net_input(self, x):
    mask = tf.broadcast_to(self._mask, tf.concat([tf.shape(x)[:-1], [1]], 0))
    return tf.concat([x * self._mask, mask], axis=-1)

  def restrict(self, s, t):
    return s * (1.0 - self._mask), t * (1.0 - self._mask)

  def transformed_part(self, x):
    return x

  def merge(self, x, new_part):
    del x  # new_part equals x on the conditioning pixels, where s = t = 0.
    return new_part


class ChannelMask:
  """Conditions on one half of the channels and transforms the other half.

  parity 0 conditions on the first half, parity 1 on the second.
  """

  def __init__(self, event_shape, parity):
    channels = event_shape[-1]
    if channels % 2:
      raise ValueError(
          f"A channel-wise coupling needs an even number of channels; got event "
          f"shape {tuple(event_shape)}.")
    self.parity = parity
    self.net_in_channels = channels // 2
    self.net_out_channels = channels // 2

  def _halves(self, x):
    first, second = tf.split(x, 2, axis=-1)
    return (first, second) if self.parity == 0 else (second, first)

  def net_input(self, x):
    return self._halves(x)[0]

  def restrict(self, s, t):
    return s, t

  def transformed_part(self, x):
    return self._halves(x)[1]

  def merge(self, x, new_part):
    kept = self._halves(x)[0]
    parts = [kept, new_part] if self.parity == 0 else [new_part, kept]
    return tf.concat(parts, axis=-1)


_MASKS = {"checkerboard": CheckerboardMask, "channel": ChannelMask}


def network_channels(event_shape, mask_type):
  """(input, output) channels of the s/t network of a `mask_type` coupling of
  `event_shape` images (without a class embedding's channels)."""
  mask = _MASKS[mask_type](tuple(event_shape), 0)
  return mask.net_in_channels, mask.net_out_channels


class AffineCoupling(fused.FusedBijector):
  """RealNVP's affine coupling layer on images.

  With a binary mask b splitting the entries of an image into a conditioning part
  (b = 1) and a transformed part (b = 0), and `s, t = net(y_b)`, the paper's f maps an
  image y to

    f(y)_b  = y_b
    f(y)_~b = y_~b * exp(s) + t

  and its log-det is `sum(s)`. In TFP's direction (`forward` maps latent to image) f is
  `inverse`, so

    inverse(y) = y_b + (1 - b) * (y * exp(s(y_b)) + t(y_b)),  ildj =  sum((1 - b) s)
    forward(x) = x_b + (1 - b) * ((x - t(x_b)) * exp(-s(x_b))),  fldj = -sum((1 - b) s)

  Both directions evaluate the network once, on the unchanged part, so inversion is
  exact whatever the network computes.

  Masks: "checkerboard" (b[i, j] = (i + j + parity) mod 2) or "channel" (parity 0
  conditions on the first half of the channels, parity 1 on the second half).

  The keyword argument `training` (default False) runs the network's batch
  normalisation on batch statistics and updates its moving averages.

  The network is passed in, as TFP's `RealNVP` takes its `shift_and_log_scale_fn`: a
  Keras layer, called as `network(inputs, training=...)`, mapping the masked image,
  [B, H, W, C_in], to `(s, t)`, each
  [B, H, W, C_out] in float32, with `(C_in, C_out) = network_channels(event_shape,
  mask_type)` (`nets.CouplingResNet(C_out, ...)` is the paper's). An unbuilt layer is
  built here, so its variables exist from the start. The network's dtype policy (say
  "mixed_bfloat16") is the precision it computes in; the flow stays exact whatever
  it computes, since the log-det is exact for the s and t it returns and both
  directions recompute the same s and t from the same unchanged part.

  Class-conditional: with `class_embedding` (a `nets.ClassEmbedding` of `dim`
  channels) the network also sees the label y's learned vector at every position
  (C_in grows by `dim`), so `s, t = net(y_b, y)`; the keyword argument `labels`
  (int [B]) gives y. The formulas above hold for each y, with the same exactness.
  """

  def __init__(self, event_shape, mask_type, parity, network, class_embedding=None,
               validate_args=False, name="affine_coupling"):
    parameters = dict(locals())
    event_shape = tuple(int(d) for d in event_shape)
    if len(event_shape) != 3:
      raise ValueError(f"event_shape must be (H, W, C); got {event_shape}.")
    if mask_type not in _MASKS:
      raise ValueError(
          f"Unknown mask_type {mask_type!r}; use one of {sorted(_MASKS)}.")
    if parity not in (0, 1):
      raise ValueError(f"parity must be 0 or 1; got {parity}.")
    mask = _MASKS[mask_type](event_shape, parity)
    out_channels = getattr(network, "out_channels", mask.net_out_channels)
    if out_channels != mask.net_out_channels:
      raise ValueError(
          f"A {mask_type} coupling of {event_shape} images needs a network with "
          f"{mask.net_out_channels} output channels; got {out_channels}.")
    with tf.name_scope(name) as name:
      self._image_shape = event_shape
      self._mask = mask
      self._net = network
      self._embedding = class_embedding
      in_channels = mask.net_in_channels
      if class_embedding is not None:
        if not class_embedding.built:
          class_embedding.build()
        in_channels += class_embedding.dim
      if not network.built:
        network.build((None,) + event_shape[:2] + (in_channels,))
      # Keras 3 variables are not tf.Variables, so tf.Module (and with it the
      # distribution that holds this bijector) cannot see them; holding the
      # tf.Variables behind them makes them reachable from the flow.
      self._net_variables = tuple(_tf_variable(v) for v in network.weights + (
          class_embedding.weights if class_embedding is not None else []))
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  @property
  def image_shape(self):
    """(H, W, C) of the images this coupling transforms."""
    return self._image_shape

  @property
  def net(self):
    return self._net

  @property
  def mask_type(self):
    return type(self._mask).__name__

  @property
  def weight_scale_variables(self):
    """The network's weight-scale parameters (the L2 penalty's), if it names any."""
    return [_tf_variable(v) for v in getattr(self._net, "weight_scale_variables", [])]

  @property
  def conditional(self):
    """Whether the coupling takes labels (it was given a class embedding)."""
    return self._embedding is not None

  def _scale_and_shift(self, unchanged, training=False, labels=None):
    inputs = self._mask.net_input(unchanged)
    if self.conditional:
      if labels is None:
        raise ValueError(f"{self.name} is class-conditional: pass labels.")
      inputs = tf.concat([inputs, self._embedding(labels, inputs)], axis=-1)
    s, t = self._net(inputs, training=training)
    return self._mask.restrict(s, t)

  def _inverse_and_log_det(self, y, training=False, labels=None):
    s, t = self._scale_and_shift(y, training, labels)
    x = self._mask.merge(y, self._mask.transformed_part(y) * tf.exp(s) + t)
    return x, fused.sum_over_event(s)

  def _forward_and_log_det(self, x, training=False, labels=None):
    s, t = self._scale_and_shift(x, training, labels)
    y = self._mask.merge(x, (self._mask.transformed_part(x) - t) * tf.exp(-s))
    return y, -fused.sum_over_event(s)


def _tf_variable(keras_variable):
  variable = getattr(keras_variable, "value", keras_variable)
  if not isinstance(variable, tf.Variable):
    raise TypeError(f"Expected a tf.Variable behind {keras_variable!r}.")
  return variable
