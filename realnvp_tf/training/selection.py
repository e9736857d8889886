"""Model selection: a run's validations and the choice of the weights it keeps.

During training the validation split is evaluated every `eval_every` steps (the same
`eval_images` images and noise each time, so the figures compare); each figure goes
to the validation's actions, `KeepBestWeights` (model_dir/best/) among them. At the
end the last weights are validated the same way, then the weights `select` names
("best" or "last") are put in place (`selected_weights`) for the closing steps.
"""

import contextlib

from absl import logging
import tensorflow as tf

from realnvp_tf.training import weights


class KeepBestWeights:
  """A validation action: the weights of the best figure so far, kept in best/
  (a `runs.best.BestCheckpoint`)."""

  def __init__(self, best_checkpoint):
    self.best = best_checkpoint
    self.quiet = False  # set while a progress bar shows the figures

  def __call__(self, step, result):
    if self.best.offer(step, result["bits_per_dim"]):
      (logging.debug if self.quiet else logging.info)(
          "New best validation bits/dim %.4f.", result["bits_per_dim"])


class Validation:
  """Validates the weights in use (EMA ones when on): `evaluator.bits_per_dim` of the
  validation images, reported (TensorBoard, the log), kept in `history`, then given to
  each of `actions` as `action(step, result)`.

  Args:
    evaluator: the run's `evaluator.Evaluator`.
    state: its `training.state.TrainState`.
    writer: `name -> tf.summary writer` ("validation", "test").
    actions: what to do with each figure (e.g. `KeepBestWeights`).
    reestimate: `() -> None`, re-estimates the batch-norm statistics for the weights
      in the flow (see `batch_norm_estimation`); used for EMA weights, whose
      statistics the moving averages (collected for the raw weights) are not.
  """

  def __init__(self, evaluator, state, writer, actions=(), reestimate=None):
    self.evaluator, self.state, self.writer = evaluator, state, writer
    self.actions, self.reestimate = list(actions), reestimate
    self.history = []  # (step, validation bits/dim) of this process's evaluations
    self.quiet = False  # set while a progress bar shows the figures

  @property
  def latest(self):
    """The latest validation bits/dim, or None."""
    return self.history[-1][1] if self.history else None

  def report(self, split, max_images=None):
    """Bits/dim of the flow's current weights on `split` (`max_images` of it), logged
    to TensorBoard with a sample grid at the current step."""
    step = int(self.state.step.numpy())
    result = self.evaluator.bits_per_dim(split, max_images)
    grid = self.evaluator.sample_grid(step)
    with self.writer(split).as_default(step=step):
      tf.summary.scalar("bits_per_dim", result["bits_per_dim"])
      tf.summary.image("samples", grid[None])
    # With a progress bar on screen, the bar shows the figure (a log line would land
    # in the middle of it); TensorBoard and metrics.json keep every one.
    (logging.debug if self.quiet else logging.info)(
        "Step %d: %s bits/dim %.4f +- %.4f on %d images.", step, split,
        result["bits_per_dim"], result["bits_per_dim_stderr"], result["num_images"])
    return {k: v for k, v in result.items() if k != "per_image"}

  def __call__(self, statistics_ready=False):
    """Validates the weights in use; returns the figures (None without a validation
    split). With EMA, the batch-norm statistics are first re-estimated for the
    averaged weights (and put back afterwards), unless `statistics_ready` says they
    already belong to them; the weights kept in best/ carry those statistics."""
    if not self.evaluator.has_validation:
      return None
    step = int(self.state.step.numpy())
    with self.state.averaged_weights(), self._statistics_for_averages(
        statistics_ready):
      result = self.report("validation", self.evaluator.config.eval_images or None)
      self.history.append((step, result["bits_per_dim"]))
      for action in self.actions:
        action(step, result)
    return result

  def _statistics_for_averages(self, ready):
    """Context: with EMA, the batch-norm statistics re-estimated for the averaged
    weights (unless `ready`), the moving averages put back afterwards."""
    if ready or self.state.ema is None or self.reestimate is None:
      return contextlib.nullcontext()
    return weights.swapped(self.state.statistics, self.reestimate)


@contextlib.contextmanager
def selected_weights(state, best, select, last_validation=None):
  """Context: the weights `select` names in the flow; yields (their step, their
  validation bits/dim). "last": the last weights (EMA ones when on), with
  `last_validation`; "best": those kept in `best` (the last ones when they are the
  best; and, with a warning, when best/ cannot be restored)."""
  step = int(state.step.numpy())
  restored = False
  with contextlib.ExitStack() as stack:
    if select == "best" and best.step not in (None, step):
      try:  # a partial restore is undone by the swap
        stack.enter_context(weights.swapped(state.flow.variables, best.restore))
        restored = True
      except ValueError as e:
        logging.warning("%s: the last weights are evaluated and exported instead of "
                        "the best.", e)
    if not restored:
      stack.enter_context(state.averaged_weights())
    yield (best.step, best.value) if restored else (step, last_validation)
