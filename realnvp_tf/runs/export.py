"""SavedModel export: the trained flow, servable by TensorFlow alone."""

import dataclasses
import json

import tensorflow as tf

from realnvp_tf.data import dequantization
from realnvp_tf.model import conditional
from realnvp_tf.model import flow as flow_lib
from realnvp_tf.ood import scores


class RealNVPServing(tf.Module):
  """The functions a user of a trained RealNVP needs, with fixed input signatures.

  Everything runs in inference mode (batch norm on its moving averages). Pixel values
  are dequantized intensities in [0, K); images are uint8 in 0..K-1.

    log_prob(images[, labels]), bits_per_dim(images[, labels], seed): log p(x)
    sample(num_samples | labels, temperature, seed), encode(images[, labels]),
    decode(z[, labels]), ood_scores(images, seed), classify(images, seed)

  A class-conditional flow (`num_classes` > 0) takes `labels` (int32, one per image,
  in 0..num_classes-1) as the second input wherever the density depends on them,
  and its `sample` draws one sample per label. Its `classify` is the generative
  classifier p(y | x) = p(x | y) p(y) / p(x), with p(y) the variable `log_prior`
  (from the training split's label counts, `metadata["class_counts"]`; uniform
  without them); its `ood_scores` are those of the marginal p(x) = sum_y p(x | y)
  p(y). `runs.loading.LoadedModel` makes the labels optional on top of these.

  `metadata["typicality_reference"]` (dict(mean, std, ...) of held-out bits/dim, see
  `ood.scores.reference_statistics`), when given, is also kept as the variable
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
    self._num_classes = config.num_classes
    reference = metadata.get("typicality_reference")
    self.typicality_reference = None if reference is None else tf.Variable(
        [reference["mean"], reference["std"]], trainable=False, dtype=tf.float32,
        name="typicality_reference")
    self.log_prior = None if not self._num_classes else tf.Variable(
        conditional.log_prior(metadata.get("class_counts"), self._num_classes),
        trainable=False, name="log_prior")
    self._define_functions(
        pixels=tf.TensorSpec([None, height, width, channels], tf.float32,
                             name="images"),
        images=tf.TensorSpec([None, height, width, channels], tf.uint8, name="images"),
        latents=tf.TensorSpec([None, height, width, channels], tf.float32, name="z"),
        seed=tf.TensorSpec([2], tf.int32, name="seed"),
        temperature=tf.TensorSpec([], tf.float32, name="temperature"))

  def _define_functions(self, pixels, images, latents, seed, temperature):
    # The flow's two directions as functions of their own, which every signature
    # calls: traced once and stored once, not once per signature (the smoke model's
    # export: 18% faster and 36% smaller; docs/performance.md).
    self._flow_log_prob = self._function(
        lambda x, labels=None: flow_lib.log_prob(self._flow, x, labels), pixels)
    self._flow_forward = self._function(
        lambda z, labels=None: self._flow.bijector.forward(
            z, **({} if labels is None else {"labels": labels})), latents)
    self.log_prob = self._function(self._log_prob, pixels)
    self.bits_per_dim = self._function(self._bits_per_dim, images, seed)
    self.ood_scores = tf.function(self._ood_scores, input_signature=[images, seed])
    self.encode = self._function(self._encode, pixels)
    self.decode = self._function(self._decode, latents)
    if not self._num_classes:
      self.sample = tf.function(self._sample, input_signature=[
          tf.TensorSpec([], tf.int32, name="num_samples"), temperature, seed])
      return
    self.sample = tf.function(
        lambda labels, temperature, seed: self._sample(
            tf.size(labels), temperature, seed, labels=labels),
        input_signature=[self._labels_spec(), temperature, seed])
    self.classify = tf.function(self._classify, input_signature=[images, seed])

  @staticmethod
  def _labels_spec():
    return tf.TensorSpec([None], tf.int32, name="labels")

  def _function(self, method, first, *rest):
    """`method` as a tf.function of (first, *rest), with `labels` as the second
    input for a class-conditional flow (passed on as `labels=`)."""
    if not self._num_classes:
      return tf.function(method, input_signature=[first, *rest])

    def with_labels(inputs, labels, *more):
      return method(inputs, *more, labels=labels)

    return tf.function(with_labels,
                       input_signature=[first, self._labels_spec(), *rest])

  @property
  def signature_names(self):
    return ("log_prob", "bits_per_dim", "ood_scores", "sample", "encode", "decode"
            ) + (("classify",) if self._num_classes else ())

  def signatures(self):
    """{name: function} for `tf.saved_model.save` (`serving_default` = log_prob)."""
    return dict({name: getattr(self, name) for name in self.signature_names},
                serving_default=self.log_prob)

  def _check_pixels(self, images):
    message = (f"images must be dequantized pixel values in [0, {self._num_levels}) "
               f"with shape [batch, {', '.join(map(str, self._image_shape))}]")
    return [tf.debugging.assert_greater_equal(images, 0.0, message=message),
            tf.debugging.assert_less(images, float(self._num_levels), message=message)]

  @staticmethod
  def _call(function, inputs, labels):
    return function(inputs) if labels is None else function(inputs, labels)

  def _density(self, values, labels=None):
    """log p(x | y) with labels, else log p(x) (the marginal of a conditional flow)."""
    if labels is not None or not self._num_classes:
      return self._call(self._flow_log_prob, values, labels)
    return conditional.marginal_log_prob(self._flow_log_prob, values, self._num_classes,
                                         self.log_prior)

  def _log_prob(self, images, labels=None):
    with tf.control_dependencies(self._check_pixels(images)):
      return {"log_prob": self._density(tf.identity(images), labels)}

  def _bits_per_dim(self, images, seed, labels=None):
    return {"bits_per_dim": flow_lib.bits_per_dim(
        self._density(self._dequantized(images, seed), labels), self._image_shape)}

  def _ood_scores(self, images, seed):
    """`ood.scores.scores` of uint8 images (bits/dim with the noise of `bits_per_dim`)."""
    bits = self._bits_per_dim(images, seed)["bits_per_dim"]
    return scores.scores(bits, scores.png_bits_per_dim(images), self.typicality_reference)

  def _classify(self, images, seed):
    """p(y | x) of uint8 images (dequantized as `bits_per_dim` does): probabilities
    [B, n], labels (argmax) [B], log_likelihoods log p(x | y) [B, n], and
    bits_per_dim of the marginal p(x) [B]."""
    likelihoods = conditional.class_log_likelihoods(
        self._flow_log_prob, self._dequantized(images, seed), self._num_classes)
    out = conditional.posterior(likelihoods, self.log_prior)
    return {"probabilities": out["probabilities"], "labels": out["labels"],
            "log_likelihoods": likelihoods,
            "bits_per_dim": flow_lib.bits_per_dim(out["log_prob"], self._image_shape)}

  def _dequantized(self, images, seed):
    checks = []
    if self._num_levels < 256:
      checks.append(tf.debugging.assert_less(
          images, tf.constant(self._num_levels, tf.uint8),
          message=f"images must hold integer pixels in [0, {self._num_levels})"))
    with tf.control_dependencies(checks):
      # Image i: the noise evaluation with seed[0] gives image seed[1] + i.
      noise = dequantization.batch_noise(self._image_shape, seed[0], seed[1],
                                         tf.shape(images)[0])
      return dequantization.add_noise(tf.cast(images, tf.float32), noise)

  def _images_of(self, values):
    return {"values": values, "images": flow_lib.to_images(values, self._num_levels)}

  def _sample(self, num_samples, temperature, seed, labels=None):
    message = "temperature must be a finite number >= 0"
    # `>= 0` is False for NaN: the first check refuses NaN and negatives.
    checks = [tf.debugging.assert_greater_equal(temperature, 0.0, message=message),
              tf.debugging.assert_all_finite(temperature, message=message)]
    with tf.control_dependencies(checks):
      return self._images_of(self._call(
          self._flow_forward, flow_lib.sample_latents(
              self._flow, num_samples, tf.identity(temperature), seed), labels))

  def _encode(self, images, labels=None):
    kwargs = {} if labels is None else {"labels": labels}
    with tf.control_dependencies(self._check_pixels(images)):
      return {"z": self._flow.bijector.inverse(tf.identity(images), **kwargs)}

  def _decode(self, z, labels=None):
    check = tf.debugging.assert_all_finite(
        z, message="z must be finite (no NaN or infinite latents)")
    with tf.control_dependencies([check]):
      return self._images_of(self._call(self._flow_forward, tf.identity(z), labels))


def model_metadata(dataset, data_spec, step, typicality_reference=None,
                   class_counts=None, class_names=None, **more):
  """The metadata of trained weights, as an export keeps it and a run directory
  loaded for inference carries it: the dataset and data settings they were trained
  on, their step and, when known, the typicality reference (the typicality scores'),
  a class-conditional model's class counts (its prior) and class names, and `more`
  (e.g. `select`). Values that are None are left out."""
  values = dict(dataset=dataset, data=data_spec, step=step,
                typicality_reference=typicality_reference, class_counts=class_counts,
                class_names=class_names, **more)
  return {name: value for name, value in values.items() if value is not None}


def serving_module(flow, metadata=None):
  """The serving module of `flow` (`RealNVPServing`), for either kind of flow."""
  return RealNVPServing(flow, metadata)


def export_saved_model(flow, export_dir, metadata=None):
  """Writes `flow` as a SavedModel with signatures log_prob, bits_per_dim,
  ood_scores, sample, encode and decode (`serving_default` = log_prob), and classify
  for a class-conditional flow (see `RealNVPServing`). Returns `export_dir`.

  `metadata` (a JSON-able dict, e.g. the dataset name) is stored with the model
  config in the SavedModel's `metadata` variable; its `typicality_reference` (see
  `RealNVPServing`) enables the typicality scores, its `class_counts` set a
  class-conditional model's prior.
  """
  module = serving_module(flow, metadata)
  tf.saved_model.save(module, export_dir, signatures=module.signatures())
  return export_dir
