"""The end of a training run as a list of steps (`Trainer.finish`).

Each closing step is an object called with the `RunEnd` of the run: what the steps
before it found (the metrics so far, the selected weights' step and figure) and the
trainer whose parts it uses. The trainer's end is the list `Trainer.closing_steps`
gives; a step of a user's own (an extra evaluation, a copy of the export) is one more
object in `fit(closing_steps=[...])`, run with the selected weights in place before
the metrics are written:

    class TrainFigure:
      def __call__(self, end):
        result = end.trainer.evaluator.bits_per_dim("train", max_images=10_000)
        end.metrics["train_images_bits_per_dim"] = result["bits_per_dim"]

    trainer.fit(closing_steps=[TrainFigure()])
"""

import dataclasses
import math
import os
from typing import Any, Optional

from absl import logging
import tensorflow as tf

from realnvp_tf.runs import export
from realnvp_tf.training import actions as actions_lib
from realnvp_tf.training import selection


@dataclasses.dataclass
class RunEnd:
  """What the closing steps of a run share.

  Attributes:
    trainer: the `Trainer` (its state, evaluator, validation, run directory, config).
    step: the run's last step.
    metrics: the figures for metrics.json, filled by the steps.
    last_validation: the last weights' validation bits/dim (None without one).
    selected_step, selected_validation: the step and validation figure of the weights
      in place (set by `WithSelectedWeights`).
    typicality_reference: the export's reference statistics (`TypicalityReference`).
  """

  trainer: Any
  step: int
  metrics: dict = dataclasses.field(default_factory=dict)
  last_validation: Optional[float] = None
  selected_step: Optional[int] = None
  selected_validation: Optional[float] = None
  typicality_reference: Optional[dict] = None


class ReestimateBatchNorm:
  """Batch-norm statistics for the final weights (the averaged ones with EMA) on
  `num_batches` training batches, then a checkpoint of them (and of the last step,
  when the loop's last save was earlier)."""

  def __init__(self, num_batches):
    self.num_batches = num_batches

  def __call__(self, end):
    trainer = end.trainer
    with trainer.state.averaged_weights():
      reestimated = trainer.recalibrate_batch_norm(self.num_batches)
    manager = trainer.manager
    if reestimated or manager.latest_checkpoint != os.path.join(
        manager.directory, f"ckpt-{end.step}"):
      manager.save(checkpoint_number=end.step)


class ValidateLastWeights:
  """The last weights' validation figure: a candidate for best/ like the others."""

  def __call__(self, end):
    last = end.trainer.validation(statistics_ready=True)
    end.last_validation = last["bits_per_dim"] if last else None


class WithSelectedWeights:
  """Runs `steps` with the weights `select` names in place ("best": best/'s, "last":
  the last, averaged with EMA), and puts the last weights back afterwards."""

  def __init__(self, select, steps):
    self.select, self.steps = select, list(steps)

  def __call__(self, end):
    trainer = end.trainer
    with selection.selected_weights(trainer.state, trainer.best, self.select,
                                    end.last_validation) as chosen:
      end.selected_step, end.selected_validation = chosen
      for step in self.steps:
        step(end)


class TestFigure:
  """The test split's bits/dim (its one reading), reported like validation's."""

  def __call__(self, end):
    end.metrics.update(end.trainer.validation.report("test"))


class ClassifierFigure:
  """A class-conditional model's headline figure: its generative classifier on the
  test split."""

  def __call__(self, end):
    end.metrics["classifier"] = end.trainer.evaluator.classify("test")


class RequireFinite:
  """A model that is not finite is neither recorded nor exported."""

  def __call__(self, end):
    flow, figure = end.trainer.state.flow, end.metrics["bits_per_dim"]
    finite = all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in flow.variables)
    if not (finite and math.isfinite(figure)):
      raise actions_lib.NonFiniteLossError(
          f"Training ended at step {end.step} with "
          + ("non-finite weights" if not finite else
             f"a non-finite test figure ({figure})")
          + "; nothing was exported. Lower learning_rate or add warmup_steps.")


class TypicalityReference:
  """The selected weights' bits/dim on held-out images: the export's reference for
  its typicality scores."""

  def __call__(self, end):
    end.typicality_reference = end.trainer.evaluator.typicality_reference()


class RunRecord:
  """What metrics.json says of the run besides the figures: steps, the selection,
  the validation history, the data and model settings, the classes."""

  def __call__(self, end):
    trainer = end.trainer
    state, config = trainer.state, trainer.config
    end.metrics.update(
        step=end.step, select=config.select, selected_step=end.selected_step,
        selected_validation_bits_per_dim=end.selected_validation,
        last_validation_bits_per_dim=end.last_validation,
        validation_history=trainer.validation.history,
        train_bits_per_dim=trainer.loss_tracker.last,
        nonfinite_steps=int(state.nonfinite_total.numpy()),
        dataset=config.dataset, data=config.data_spec().as_dict(),
        model_config=dataclasses.asdict(trainer.model_config),
        typicality_reference=end.typicality_reference, **trainer.class_metadata())
    if state.loss_scale is not None:
      end.metrics.update(loss_scale=float(state.loss_scale.scale.numpy()),
                         loss_scale_skipped_steps=int(state.loss_scale.skipped.numpy()))


class WriteMetrics:
  """model_dir/metrics.json."""

  def __call__(self, end):
    end.trainer.run_dir.write_metrics(end.metrics)


class Export:
  """The SavedModel of the weights in place, in model_dir/export/."""

  def __call__(self, end):
    trainer = end.trainer
    config = trainer.config
    export.export_saved_model(
        trainer.state.flow, trainer.run_dir.export_dir, metadata=export.model_metadata(
            config.dataset, config.data_spec().as_dict(), end.selected_step,
            end.typicality_reference, **trainer.class_metadata()))
    logging.debug("Exported step %d to %s.", end.selected_step,
                  trainer.run_dir.export_dir)
