"""Model selection: a training run's evaluations and the choice of the weights it keeps.

During training the validation split is evaluated every `eval_every` steps (the same
`eval_images` images and noise each time, so the figures compare), and the weights of
the best figure are kept in `model_dir/best/` (`runs.best.BestCheckpoint`). At the end
the last weights are evaluated the same way, then the selected weights (`select`:
"best" or "last") are scored on the test split, read once, and exported.
"""

import contextlib

from absl import logging
import tensorflow as tf

from realnvp_tf import data
from realnvp_tf.evaluation import classifier
from realnvp_tf.evaluation import figures
from realnvp_tf.evaluation import likelihood
from realnvp_tf.model import conditional
from realnvp_tf.model import flow as flow_lib
from realnvp_tf.ood import scores
from realnvp_tf.runs import best

# Held-out images whose bits/dim give the export's typicality reference.
TYPICALITY_IMAGES = 10_000


class ModelSelection:
  """The evaluations of one run and its best weights (`Trainer.selection`).

  Args:
    info: the run's `data.DatasetInfo`.
    config: its `TrainConfig`.
    state: its `training.state.TrainState`.
    run_directory: its `runs.directory.RunDirectory`.
    writer: `name -> tf.summary writer` ("validation", "test").
    reestimate: `() -> None`, re-estimates the batch-norm statistics for the weights
      in the flow (see `batch_norm_estimation`); used for EMA weights, whose
      statistics the moving averages (collected for the raw weights) are not.
    log_prior: log p(y) of a class-conditional flow (`conditional`), for its
      marginal p(x) in the typicality reference.

  A class-conditional flow is evaluated on -log p(x | y) with each image's label,
  and its sample grids have a row per class.
  """

  def __init__(self, info, config, state, run_directory, writer, reestimate=None,
               log_prior=None):
    self.info, self.config, self.state, self.writer = info, config, state, writer
    self.reestimate = reestimate
    self.num_classes = state.flow.bijector.config.num_classes
    self.log_prior = log_prior
    self.best = best.BestCheckpoint(run_directory, state.flow)
    self.history = []  # (step, validation bits/dim) of this process's evaluations
    self.progress_bar = False  # set while a progress bar shows the figures
    # Traced once for the run (each evaluation sees the variables' current values):
    # a new function per evaluation would trace the whole flow again every time, and
    # so would each new batch size (the last, partial batch) without the signature's
    # open batch dimension. Without classes, p(x) is the marginal: one function.
    images = tf.TensorSpec([None, *info.image_shape], tf.float32)
    if self.num_classes:
      self._log_prob = tf.function(
          self.log_prob, input_signature=[images, tf.TensorSpec([None], tf.int32)])
      self._marginal_log_prob = tf.function(self.marginal_log_prob,
                                            input_signature=[images])
    else:
      self._log_prob = tf.function(lambda x: self.log_prob(x), input_signature=[images])
      self._marginal_log_prob = self._log_prob
    self._grid_labels, self._grid_columns, count = None, None, config.num_samples
    if self.num_classes:
      self._grid_columns = max(1, count // self.num_classes)
      self._grid_labels = conditional.grid_labels(self.num_classes, self._grid_columns)
      count = len(self._grid_labels)
    self._sample = tf.function(lambda seed: flow_lib.sample(
        state.flow, count, seed=seed, labels=self._grid_labels))

  @property
  def latest(self):
    """The latest validation bits/dim, or None."""
    return self.history[-1][1] if self.history else None

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

  def evaluate(self, split, max_images=None):
    """Bits/dim of the flow's current weights on `split` (`max_images` of it), logged
    to TensorBoard with a sample grid at the current step."""
    step = int(self.state.step.numpy())
    result = self.bits_per_dim(split, max_images)
    grid = self.sample_grid(step)
    with self.writer(split).as_default(step=step):
      tf.summary.scalar("bits_per_dim", result["bits_per_dim"])
      tf.summary.image("samples", grid[None])
    # With a progress bar on screen, the bar shows the figure (a log line would land
    # in the middle of it); TensorBoard and metrics.json keep every one.
    log = logging.debug if self.progress_bar else logging.info
    log("Step %d: %s bits/dim %.4f +- %.4f on %d images.", step, split,
                 result["bits_per_dim"], result["bits_per_dim_stderr"],
                 result["num_images"])
    return {k: v for k, v in result.items() if k != "per_image"}

  def bits_per_dim(self, split, max_images=None):
    """`likelihood.evaluate_bits_per_dim` of the flow's current weights on `split`
    (`max_images` of it), with the run's traced log-likelihood; nothing logged."""
    return likelihood.evaluate_bits_per_dim(
        self._log_prob, self.dataset(split, max_images), self.info.image_shape)

  def log_prob(self, images, labels=None):
    """log p(x), or log p(x | y) of a class-conditional flow, in inference mode."""
    return flow_lib.log_prob(self.state.flow, images, labels)

  def sample_grid(self, step):
    """A grid of `num_samples` samples (a row per class for a class-conditional
    flow: `num_samples // num_classes` each, at least one)."""
    samples = self._sample(tf.constant([self.config.seed, step], tf.int64))
    return figures.image_grid(flow_lib.to_images(samples, self.info.num_levels),
                              self.info.num_levels, self._grid_columns)

  def marginal_log_prob(self, images):
    """log p(x): the flow's, or for a class-conditional one
    logsumexp_y log p(x | y) p(y) with `log_prior` (uniform when None)."""
    flow = self.state.flow
    if not self.num_classes:
      return flow.log_prob(images)
    return conditional.marginal_log_prob(flow, images, self.num_classes,
                                         self._log_prior())

  def classify(self, split="test"):
    """The generative classifier of a class-conditional flow's current weights on
    `split` (see `evaluation.classifier.evaluate_classifier`), with the run's prior."""
    flow, count = self.state.flow, self.num_classes
    likelihoods = tf.function(
        lambda images: conditional.class_log_likelihoods(flow, images, count),
        reduce_retracing=True)
    prior = ("training label counts" if self.log_prior is not None else "uniform")
    return classifier.evaluate_classifier(
        lambda images: likelihoods(images).numpy(), self.dataset(split),
        self._log_prior(), self.info.image_shape, prior)

  def _log_prior(self):
    return (self.log_prior if self.log_prior is not None else
            conditional.uniform_log_prior(self.num_classes))

  def typicality_reference(self, max_images=TYPICALITY_IMAGES):
    """`ood.scores.reference_statistics` of the flow's current weights: bits/dim (of
    p(x), the marginal for a class-conditional flow) of up to `max_images` validation
    images (held out, so not flattered by overfitting as training images are; the
    training split only for a dataset without one)."""
    split = "validation" if self.has_validation else "train"
    result = likelihood.evaluate_bits_per_dim(
        self._marginal_log_prob, self.dataset(split, max_images, labels=False),
        self.info.image_shape)
    return scores.reference_statistics(result["per_image"], split)

  def validate(self, statistics_ready=False):
    """Evaluates the weights in use (EMA ones when on) on the validation images and
    keeps them if they are the best so far. Returns the figures (None without a
    validation split).

    With EMA, the batch-norm statistics are first re-estimated for the averaged
    weights (and put back afterwards), unless `statistics_ready` says they already
    belong to them; the weights kept in best/ carry those statistics.
    """
    if not self.has_validation:
      return None
    step = int(self.state.step.numpy())
    with self.state.averaged_weights(), self._statistics_for_averages(
        statistics_ready):
      result = self.evaluate("validation", self.config.eval_images or None)
      self.history.append((step, result["bits_per_dim"]))
      if self.best.offer(step, result["bits_per_dim"]):
        (logging.debug if self.progress_bar else logging.info)(
            "New best validation bits/dim %.4f.", result["bits_per_dim"])
    return result

  @contextlib.contextmanager
  def _statistics_for_averages(self, ready):
    if ready or self.state.ema is None or self.reestimate is None:
      yield
      return
    statistics = self.state.flow.non_trainable_variables
    saved = [v.numpy() for v in statistics]
    self.reestimate()
    try:
      yield
    finally:
      for variable, value in zip(statistics, saved, strict=True):
        variable.assign(value)

  @contextlib.contextmanager
  def selected_weights(self, select, last_validation=None):
    """Context: the weights `select` names in the flow; yields (their step, their
    validation bits/dim). "last": the last weights (EMA ones when on), with
    `last_validation`; "best": those kept in best/ (the last ones when they are
    the best; and, with a warning, when best/ cannot be restored)."""
    step = int(self.state.step.numpy())
    variables = self.state.flow.variables
    saved = [v.numpy() for v in variables]
    restored = False
    if select == "best" and self.best.step not in (None, step):
      try:
        self.best.restore()
        restored = True
      except ValueError as e:
        # A partial restore undone.
        for variable, value in zip(variables, saved, strict=True):
          variable.assign(value)
        logging.warning("%s: the last weights are evaluated and exported instead of "
                        "the best.", e)
    if not restored:
      with self.state.averaged_weights():
        yield step, last_validation
      return
    try:
      yield self.best.step, self.best.value
    finally:
      for variable, value in zip(variables, saved, strict=True):
        variable.assign(value)
