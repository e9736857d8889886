"""The RealNVP model as a `tfp.distributions.TransformedDistribution`."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from realnvp_tf.model import bijectors
from realnvp_tf.model.config import RealNVPConfig

tfd = tfp.distributions


def build_realnvp(config: RealNVPConfig, validate_args=False):
  """Builds RealNVP: a standard Normal over image-shaped z, pushed through the flow.

  All variables are created here (call it inside `strategy.scope()` to distribute
  them), and they are all reachable from the returned distribution: its
  `trainable_variables` and `variables` list them, and a `tf.train.Checkpoint` or a
  SavedModel that holds the distribution holds them.

  `log_prob(x)` is the density of dequantized pixel intensities x in [0, K); pass
  `bijector_kwargs={"training": True}` for batch normalisation on batch statistics
  (training mode), which also updates the moving averages. Inference mode is the
  default. A class-conditional config (`num_classes` > 0) gives p(x | y), a density
  in x for each class y: pass the labels (int [B]) as
  `bijector_kwargs={"labels": y}` (or use `log_prob` and `sample` below), for
  `sample` too.

  Args:
    config: a `RealNVPConfig`.
    validate_args: check at run time that images passed to `log_prob` lie in [0, K].

  Returns:
    A `tfd.TransformedDistribution` with event shape `config.image_shape`.
  """
  if not isinstance(config, RealNVPConfig):
    raise TypeError(f"config must be a RealNVPConfig; got {type(config).__name__}.")
  base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=config.image_shape,
                    name="standard_normal")
  return tfd.TransformedDistribution(
      base, bijectors.RealNVPBijector(config, validate_args=validate_args),
      validate_args=validate_args, name="RealNVP")


def log_prob(flow, images, labels=None, training=False):
  """`flow.log_prob(images)`: log p(x), or log p(x | y) with the labels y of a
  class-conditional flow; `training` (e.g. True) is the batch norms' mode."""
  kwargs = {"training": training} if training else {}
  if labels is not None:
    kwargs["labels"] = labels
  return flow.log_prob(images, bijector_kwargs=kwargs)


def bits_per_dim(log_prob, image_shape):
  """Negative log-likelihood in bits per dimension: -log_prob / (D ln 2), D = H W C.

  With `log_prob` the density of dequantized pixels in [0, K) (this flow's
  convention), this is the figure the literature reports. A numpy array gives a
  numpy array of its own dtype (float64 evaluations stay float64); anything else a
  tensor.
  """
  num_dims = math.prod(int(d) for d in image_shape)
  if isinstance(log_prob, np.ndarray):
    return -log_prob / (num_dims * math.log(2.0))
  return -tf.convert_to_tensor(log_prob) / (num_dims * math.log(2.0))


def to_images(values, num_levels):
  """Pixel-space values (e.g. samples) to images: clip into [0, K - 1], floor, uint8.

  The flow's support is slightly wider than [0, K) (see `LogitTransform`), so samples
  are clipped. Needs `num_levels <= 256`.
  """
  if not 2 <= num_levels <= 256:
    raise ValueError(f"to_images needs 2 <= num_levels <= 256; got {num_levels}.")
  values = tf.convert_to_tensor(values, tf.float32)
  return tf.cast(tf.floor(tf.clip_by_value(values, 0.0, num_levels - 1.0)), tf.uint8)


def sample(flow, num_samples, temperature=1.0, seed=None, labels=None):
  """Samples at a temperature: the images of z ~ N(0, T^2 I), in pixel space.

  T = 1 is `flow.sample`; lower temperatures trade diversity for typical-looking
  samples (as in the Glow and RealNVP papers' figures). `seed`: a shape-[2] stateless
  seed, or None for TensorFlow's global generator. A class-conditional flow needs
  `labels`, one class per sample (int [num_samples]); the temperature scales the
  standard Normal before the per-class prior, so T = 0 gives each class's mode.
  Returns float32 values about [0, K) (see `to_images`).
  """
  kwargs = {} if labels is None else {"labels": labels}
  return flow.bijector.forward(
      sample_latents(flow, num_samples, temperature, seed), **kwargs)


def sample_latents(flow, num_samples, temperature=1.0, seed=None):
  """The latents `sample` maps to images: T z with z ~ N(0, I) (see `sample`)."""
  shape = tf.concat([[num_samples], flow.event_shape_tensor()], 0)
  z = (tf.random.normal(shape) if seed is None else
       tf.random.stateless_normal(shape, seed))
  return tf.cast(temperature, tf.float32) * z


def weight_scale_variables(flow):
  """The variables the paper penalises with L2: weight-norm gains and tanh scales."""
  return [v for layer in flow.bijector.couplings for v in layer.weight_scale_variables]
