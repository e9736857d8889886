"""The figures of a run's flow, with the weights it holds now: no side effects.

Nothing here logs, writes a summary, keeps weights or changes a variable: the
`Validation` and the closing steps decide what to do with the figures.
"""

import tensorflow as tf

from realnvp_tf import data
from realnvp_tf.evaluation import classifier
from realnvp_tf.evaluation import figures
from realnvp_tf.evaluation import likelihood
from realnvp_tf.model import conditional
from realnvp_tf.model import flow as flow_lib
from realnvp_tf.ood import scores

# Held-out images whose bits/dim give the export's typicality reference.
TYPICALITY_IMAGES = 10_000


class Evaluator:
  """Bits/dim, the classifier, the typicality reference and sample grids of `flow`.

  Args:
    info: the run's `data.DatasetInfo`.
    config: its `TrainConfig` (eval_batch_size, seed, num_samples).
    flow: the flow, evaluated with whatever weights it holds when asked.
    log_prior: log p(y) of a class-conditional flow (`conditional`), for its
      classifier and its marginal p(x); uniform when None.

  A class-conditional flow is evaluated on -log p(x | y) with each image's label,
  and its sample grids have a row per class.
  """

  def __init__(self, info, config, flow, log_prior=None):
    self.info, self.config, self.flow = info, config, flow
    self.num_classes = flow.bijector.config.num_classes
    self.log_prior = log_prior
    # Traced once for the run (each evaluation sees the variables' current values):
    # a new function per evaluation would trace the whole flow again every time, and
    # so would each new batch size (the last, partial batch) without the signature's
    # open batch dimension. p(x) without labels; p(x | y) with them.
    images = tf.TensorSpec([None, *info.image_shape], tf.float32)
    self._marginal_log_prob = tf.function(lambda x: self.log_prob(x),
                                          input_signature=[images])
    self._log_prob = self._marginal_log_prob if not self.num_classes else tf.function(
        self.log_prob, input_signature=[images, tf.TensorSpec([None], tf.int32)])
    self._grid_labels, self._grid_columns, count = None, None, config.num_samples
    if self.num_classes:
      self._grid_columns = max(1, count // self.num_classes)
      self._grid_labels = conditional.grid_labels(self.num_classes, self._grid_columns)
      count = len(self._grid_labels)
    self._sample = tf.function(lambda seed: flow_lib.sample(
        flow, count, seed=seed, labels=self._grid_labels))

  @property
  def has_validation(self):
    return self.info.num_validation > 0

  def dataset(self, split, max_images=None, labels=None):
    """`split` ("validation", "test", "train") in evaluation order, seeded noise;
    with labels when the flow is class-conditional (or as `labels` says)."""
    ds = data.make_dataset(
        self.info, split, batch_size=self.config.eval_batch_size, training=False,
        seed=self.config.seed,
        labels=bool(self.num_classes) if labels is None else labels)
    if max_images:
      ds = ds.unbatch().take(max_images).batch(self.config.eval_batch_size)
    return ds

  def bits_per_dim(self, split, max_images=None):
    """`likelihood.evaluate_bits_per_dim` on `split` (`max_images` of it), with the
    run's traced log-likelihood."""
    return likelihood.evaluate_bits_per_dim(
        self._log_prob, self.dataset(split, max_images), self.info.image_shape)

  def log_prob(self, images, labels=None):
    """log p(x | y) with labels, else log p(x) (for a class-conditional flow the
    marginal logsumexp_y log p(x | y) p(y)), in inference mode."""
    return conditional.log_prob(self.flow, images, labels, self.log_prior)

  def sample_grid(self, step):
    """A grid of `num_samples` samples drawn with the seed of `step` (a row per class
    for a class-conditional flow: `num_samples // num_classes` each, at least one)."""
    samples = self._sample(tf.constant([self.config.seed, step], tf.int64))
    return figures.image_grid(flow_lib.to_images(samples, self.info.num_levels),
                              self.info.num_levels, self._grid_columns)

  def classify(self, split="test"):
    """The generative classifier of a class-conditional flow on `split` (see
    `evaluation.classifier.evaluate_classifier`), with the run's prior."""
    flow = self.flow
    likelihoods = tf.function(
        lambda images: conditional.class_log_likelihoods(
            lambda x, y: flow_lib.log_prob(flow, x, y), images, self.num_classes),
        reduce_retracing=True)
    prior = ("training label counts" if self.log_prior is not None else "uniform")
    return classifier.evaluate_classifier(
        lambda images: likelihoods(images).numpy(), self.dataset(split),
        self._log_prior(), self.info.image_shape, prior)

  def _log_prior(self):
    if not self.num_classes or self.log_prior is not None:
      return self.log_prior
    return conditional.uniform_log_prior(self.num_classes)

  def typicality_reference(self, max_images=TYPICALITY_IMAGES):
    """`ood.scores.reference_statistics`: bits/dim (of p(x), the marginal for a
    class-conditional flow) of up to `max_images` validation images (held out, so not
    flattered by overfitting as training images are; the training split only for a
    dataset without one)."""
    split = "validation" if self.has_validation else "train"
    result = likelihood.evaluate_bits_per_dim(
        self._marginal_log_prob, self.dataset(split, max_images, labels=False),
        self.info.image_shape)
    return scores.reference_statistics(result["per_image"], split)
