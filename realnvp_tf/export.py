"""SavedModel export: the trained flow, servable by TensorFlow alone."""

import dataclasses
import json

import tensorflow as tf

from realnvp_tf import data
from realnvp_tf import flow as flow_lib
from realnvp_tf import ood


class RealNVPServing(tf.Module):
  """The functions a user of a trained RealNVP needs, with fixed input signatures.

  Everything runs in inference mode (batch norm on its moving averages). Pixel values
  are dequantized intensities in [0, K); images are uint8 in 0..K-1.

  `metadata["typicality_reference"]` (dict(mean, std, ...) of held-out bits/dim, see
  `ood.reference_statistics`), when given, is also kept as the variable
  `typicality_reference` = [mean, std], and `ood_scores` then returns the typicality
  scores as well.
  """

  def __init__(self, flow, metadata=None):
    super().__init__(name="realnvp_serving")
    config = flow.bijector.config
    self._flow = flow
    self._variables = list(flow.variables)
    metadata = dict(metadata or {}, model=dataclasses.asdict(config))
    # JSON of the model config (and e.g. the dataset): json.loads(m.metadata.numpy()).
    self.metadata = tf.Variable(json.dumps(metadata), trainable=False, name="metadata")
    height, width, channels = config.image_shape
    self._num_levels = config.num_levels
    self._image_shape = config.image_shape
    reference = metadata.get("typicality_reference")
    self.typicality_reference = None if reference is None else tf.Variable(
        [reference["mean"], reference["std"]], trainable=False, dtype=tf.float32,
        name="typicality_reference")
    pixels = tf.TensorSpec([None, height, width, channels], tf.float32, name="images")
    uint8_images = tf.TensorSpec([None, height, width, channels], tf.uint8,
                                 name="images")
    latents = tf.TensorSpec([None, height, width, channels], tf.float32, name="z")
    seed = tf.TensorSpec([2], tf.int32, name="seed")
    self.log_prob = tf.function(self._log_prob, input_signature=[pixels])
    self.bits_per_dim = tf.function(self._bits_per_dim,
                                    input_signature=[uint8_images, seed])
    self.ood_scores = tf.function(self._ood_scores,
                                  input_signature=[uint8_images, seed])
    self.sample = tf.function(self._sample, input_signature=[
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.float32, name="temperature"), seed])
    self.encode = tf.function(self._encode, input_signature=[pixels])
    self.decode = tf.function(self._decode, input_signature=[latents])

  def _check_pixels(self, images):
    message = (f"images must be dequantized pixel values in [0, {self._num_levels}) "
               f"with shape [batch, {', '.join(map(str, self._image_shape))}]")
    return [tf.debugging.assert_greater_equal(images, 0.0, message=message),
            tf.debugging.assert_less(images, float(self._num_levels), message=message)]

  def _log_prob(self, images):
    with tf.control_dependencies(self._check_pixels(images)):
      return {"log_prob": self._flow.log_prob(tf.identity(images))}

  def _bits_per_dim(self, images, seed):
    return {"bits_per_dim": self._dequantized_bits_per_dim(images, seed)}

  def _ood_scores(self, images, seed):
    """`ood.scores` of uint8 images (bits/dim with the noise of `bits_per_dim`)."""
    return ood.scores(self._dequantized_bits_per_dim(images, seed),
                      ood.png_bits_per_dim(images), self.typicality_reference)

  def _dequantized_bits_per_dim(self, images, seed):
    checks = []
    if self._num_levels < 256:
      checks.append(tf.debugging.assert_less(
          images, tf.constant(self._num_levels, tf.uint8),
          message=f"images must hold integer pixels in [0, {self._num_levels})"))
    with tf.control_dependencies(checks):
      values = data.add_noise(tf.cast(images, tf.float32), self._noise(images, seed))
    return flow_lib.bits_per_dim(self._flow.log_prob(values), self._image_shape)

  def _noise(self, images, seed):
    """U[0, 1) noise; image i of the batch gets stateless_uniform(its shape, (seed[0],
    seed[1] + i)), so that a caller passing (s, index of the batch's first image)
    gets the same figures whatever the batch size."""
    count = tf.shape(images)[0]
    seeds = tf.stack([tf.fill([count], seed[0]), seed[1] + tf.range(count)], axis=1)
    return tf.map_fn(lambda s: tf.random.stateless_uniform(self._image_shape, s), seeds,
                     fn_output_signature=tf.float32)

  def _decode_values(self, z):
    check = tf.debugging.assert_all_finite(
        z, message="z must be finite (no NaN or infinite latents)")
    with tf.control_dependencies([check]):
      values = self._flow.bijector.forward(tf.identity(z))
    return {"values": values, "images": flow_lib.to_images(values, self._num_levels)}

  def _sample(self, num_samples, temperature, seed):
    message = "temperature must be a finite number >= 0"
    # `>= 0` is False for NaN: the first check refuses NaN and negatives.
    checks = [tf.debugging.assert_greater_equal(temperature, 0.0, message=message),
              tf.debugging.assert_all_finite(temperature, message=message)]
    with tf.control_dependencies(checks):
      values = flow_lib.sample(self._flow, num_samples, tf.identity(temperature), seed)
    return {"values": values, "images": flow_lib.to_images(values, self._num_levels)}

  def _encode(self, images):
    with tf.control_dependencies(self._check_pixels(images)):
      return {"z": self._flow.bijector.inverse(tf.identity(images))}

  def _decode(self, z):
    return self._decode_values(z)


def export_saved_model(flow, export_dir, metadata=None):
  """Writes `flow` as a SavedModel with signatures log_prob, bits_per_dim,
  ood_scores, sample, encode and decode (`serving_default` = log_prob). Returns
  `export_dir`.

  `metadata` (a JSON-able dict, e.g. the dataset name) is stored with the model
  config in the SavedModel's `metadata` variable; its `typicality_reference` (see
  `RealNVPServing`) enables the typicality scores.
  """
  module = RealNVPServing(flow, metadata)
  signatures = {
      "serving_default": module.log_prob,
      "log_prob": module.log_prob,
      "bits_per_dim": module.bits_per_dim,
      "ood_scores": module.ood_scores,
      "sample": module.sample,
      "encode": module.encode,
      "decode": module.decode,
  }
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir
