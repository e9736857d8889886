"""Composition: chains of image bijectors, factoring out, and the multi-scale flow."""

import tensorflow as tf
import tensorflow_probability as tfp

from realnvp_tf.model import config as config_lib
from realnvp_tf.model import nets
from realnvp_tf.model.bijectors import batch_norm
from realnvp_tf.model.bijectors import class_prior
from realnvp_tf.model.bijectors import coupling
from realnvp_tf.model.bijectors import fused
from realnvp_tf.model.bijectors import logit
from realnvp_tf.model.bijectors import squeeze

tfb = tfp.bijectors


class FlowChain(fused.FusedBijector):
  """Image bijectors applied in sequence, passing keyword arguments to every step.

  `steps` are listed in the order `inverse` applies them (image side first), as in
  `tfb.Chain`: `inverse(y) = steps[-1].inverse(... steps[0].inverse(y))`. Unlike
  `tfb.Chain`, keyword arguments such as `training=True` reach every step, nested
  chains included. Each step's log-det comes from its own transform pass (see
  `FusedBijector`).
  """

  def __init__(self, steps, validate_args=False, name="flow_chain"):
    parameters = dict(locals())
    if not steps:
      raise ValueError("FlowChain needs at least one step.")
    with tf.name_scope(name) as name:
      self._steps = tuple(steps)
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  @property
  def steps(self):
    return self._steps

  def _inverse_and_log_det(self, y, **kwargs):
    total = 0.0
    for step in self._steps:
      y, ildj = fused.inverse_and_log_det(step, y, **kwargs)
      total += ildj
    return y, total

  def _forward_and_log_det(self, x, **kwargs):
    total = 0.0
    for step in reversed(self._steps):
      x, fldj = fused.forward_and_log_det(step, x, **kwargs)
      total += fldj
    return x, total

  def _forward_event_shape(self, input_shape):
    for step in reversed(self._steps):
      input_shape = step.forward_event_shape(input_shape)
    return input_shape

  def _inverse_event_shape(self, output_shape):
    for step in self._steps:
      output_shape = step.inverse_event_shape(output_shape)
    return output_shape

  def _forward_event_shape_tensor(self, input_shape):
    for step in reversed(self._steps):
      input_shape = step.forward_event_shape_tensor(input_shape)
    return input_shape

  def _inverse_event_shape_tensor(self, output_shape):
    for step in self._steps:
      output_shape = step.inverse_event_shape_tensor(output_shape)
    return output_shape


class FactorOut(fused.FusedBijector):
  """Sends the first half of the channels straight to the latent space (paper 3.6).

    inverse([a, b]) = [a, inner.inverse(b)],   ildj = inner.ildj(b)

  on the channel axis: the first half is final at this scale, the second half goes on
  through `inner`, the coarser scales. The result keeps the input's shape, so the
  factored-out variables stay in place.
  """

  def __init__(self, inner, validate_args=False, name="factor_out"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._inner = inner
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  @property
  def inner(self):
    """The bijector of the coarser scales (as TFP's bijectors expose theirs)."""
    return self._inner

  def _inverse_and_log_det(self, y, **kwargs):
    final, rest = tf.split(y, 2, axis=-1)
    rest, ildj = fused.inverse_and_log_det(self.inner, rest, **kwargs)
    return tf.concat([final, rest], axis=-1), ildj

  def _forward_and_log_det(self, x, **kwargs):
    final, rest = tf.split(x, 2, axis=-1)
    rest, fldj = fused.forward_and_log_det(self.inner, rest, **kwargs)
    return tf.concat([final, rest], axis=-1), fldj


def _coupling_steps(config, event_shape, mask_type, count, num_filters, prefix):
  """`count` couplings of alternating parity, each followed by batch norm."""
  steps = []
  _, out_channels = coupling.network_channels(event_shape, mask_type)
  for i in range(count):
    name = f"{prefix}_{mask_type}_{i}"
    network = nets.CouplingResNet(
        out_channels, num_filters, config.num_res_blocks,
        use_batch_norm=config.use_batch_norm,
        batch_norm_momentum=config.batch_norm_momentum,
        batch_norm_epsilon=config.batch_norm_epsilon,
        dropout_rate=config.dropout_rate, name=f"{name}_net",
        dtype=config_lib.KERAS_POLICIES[config.compute_dtype])
    embedding = (nets.ClassEmbedding(config.num_classes, config.class_embedding_dim,
                                     name=f"{name}_net_class_embedding")
                 if config.num_classes else None)
    steps.append(coupling.AffineCoupling(event_shape, mask_type, i % 2, network,
                                         embedding, name=name))
    if config.use_batch_norm:
      steps.append(batch_norm.FlowBatchNorm(
          event_shape[-1], momentum=config.batch_norm_momentum,
          epsilon=config.batch_norm_epsilon, name=f"{name}_bn"))
  return steps


def _scale(config, index, event_shape):
  """The flow from scale `index` on, for inputs of `event_shape`.

  Every scale but the last: 3 checkerboard couplings, squeeze, 3 channel-wise
  couplings, factor out half of the channels (the rest goes to the next scale),
  unsqueeze. The last scale: 4 checkerboard couplings. Filters double per scale.
  """
  height, width, channels = event_shape
  filters = config.num_filters * 2 ** index
  prefix = f"scale{index}"
  if index == config.num_scales - 1:
    return FlowChain(
        _coupling_steps(config, event_shape, "checkerboard", 4, filters, prefix),
        name=prefix)
  squeezed = (height // 2, width // 2, channels * 4)
  steps = _coupling_steps(config, event_shape, "checkerboard", 3, filters, prefix)
  steps.append(squeeze.Squeeze(name=f"{prefix}_squeeze"))
  steps += _coupling_steps(config, squeezed, "channel", 3, 2 * filters, prefix)
  inner = _scale(config, index + 1, (height // 2, width // 2, channels * 2))
  steps.append(FactorOut(inner, name=f"{prefix}_factor_out"))
  steps.append(tfb.Invert(squeeze.Squeeze(name=f"{prefix}_unsqueeze")))
  return FlowChain(steps, name=prefix)


class RealNVPBijector(fused.FusedBijector):
  """The whole RealNVP flow: latent z (image-shaped) <-> image in pixel space [0, K).

  `inverse` (the paper's f) applies the logit preprocessing and then the multi-scale
  architecture; `forward` samples. Both accept any number of batch dimensions in
  front of the image dimensions [H, W, C], and check that those match the config.

  Keyword argument `training` (default False): batch normalisation, in the flow and in
  the s/t networks, on batch statistics with moving-average updates.

  A class-conditional config (`num_classes` > 0) takes the keyword argument `labels`
  (int, the batch shape, values in 0..num_classes-1): every coupling's network sees
  an embedding of the label, and a `ClassPrior` (the per-class Normal) is the last,
  latent-side step. An unconditional flow refuses labels.
  """

  def __init__(self, config, validate_args=False, name="real_nvp"):
    parameters = dict(locals())
    self._config = config
    with tf.name_scope(name) as name:
      steps = [logit.LogitTransform(config.num_levels, config.logit_alpha,
                                    validate_args=validate_args),
               _scale(config, 0, config.image_shape)]
      if config.conditional:
        steps.append(class_prior.ClassPrior(config.image_shape, config.num_classes,
                                            name="class_prior"))
      self._chain = FlowChain(steps, name="flow")
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  @property
  def config(self):
    return self._config

  @property
  def chain(self):
    return self._chain

  @property
  def couplings(self):
    """All affine coupling layers of the flow."""
    return [m for m in self.submodules if isinstance(m, coupling.AffineCoupling)]

  @property
  def batch_norms(self):
    """Every batch normalisation: the flow's FlowBatchNorm steps and the s/t networks'
    BatchNorm layers (each has `momentum`, `moving_mean` and `moving_variance`)."""
    flow_norms = [m for m in self.submodules if isinstance(m, batch_norm.FlowBatchNorm)]
    net_norms = [norm for c in self.couplings for norm in c.net.batch_norms]
    return flow_norms + net_norms

  def _check_images(self, images, what):
    shape = images.shape
    expected = self._config.image_shape
    if shape.rank is not None and (shape.rank < 3 or
                                   not shape[-3:].is_compatible_with(expected)):
      raise ValueError(
          f"{what} must have shape [..., {expected[0]}, {expected[1]}, {expected[2]}] "
          f"(NHWC, the config's image_shape); got shape {shape}.")
    if shape.rank is None:
      raise ValueError(f"{what} must have a known rank; got shape {shape}.")

  def _check_labels(self, labels):
    """int32 labels, checked against the classes; None for an unconditional flow."""
    classes = self._config.num_classes
    if not classes:
      if labels is not None:
        raise ValueError("This flow is unconditional (num_classes=0): it takes no "
                         "labels.")
      return None
    if labels is None:
      raise ValueError(
          f"This flow is class-conditional ({classes} classes): pass labels, e.g. "
          f"flow.log_prob(x, bijector_kwargs={{'labels': y}}).")
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
      raise ValueError(f"labels must be integers; got {labels.dtype.name}.")
    labels = tf.cast(labels, tf.int32)
    message = f"labels must be class indices in [0, {classes})"
    with tf.control_dependencies([
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, classes, message=message)]):
      return tf.identity(labels)

  def _apply(self, method, images, what, labels=None, **kwargs):
    self._check_images(images, what)
    labels = self._check_labels(labels)
    if labels is not None:
      count = tf.reduce_prod(tf.shape(images)[:-3])
      with tf.control_dependencies([tf.debugging.assert_equal(
          tf.size(labels), count, message="labels must hold one class per image")]):
        kwargs["labels"] = tf.reshape(labels, [-1])
    if images.shape.rank == 4:
      return method(self._chain, images, **kwargs)
    batch_shape = tf.shape(images)[:-3]
    flat = tf.reshape(images, tf.concat([[-1], self._config.image_shape], 0))
    out, log_det = method(self._chain, flat, **kwargs)
    return tf.reshape(out, tf.shape(images)), tf.reshape(log_det, batch_shape)

  def _inverse_and_log_det(self, y, **kwargs):
    return self._apply(fused.inverse_and_log_det, y, "Images", **kwargs)

  def _forward_and_log_det(self, x, **kwargs):
    return self._apply(fused.forward_and_log_det, x, "Latents", **kwargs)
