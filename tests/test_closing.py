"""The end of a run as closing steps (`training.closing`), the evaluator's figures
without side effects, and the one way weights are swapped (`training.weights`)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from realnvp_tf import training
from realnvp_tf.training import closing
from realnvp_tf.training import weights

import trainer_fixtures as fx


def _values(variables):
  return [v.numpy() for v in variables]


def _assert_same(variables, values):
  for variable, value in zip(variables, values, strict=True):
    np.testing.assert_array_equal(variable.numpy(), value)


def test_swapped_weights_are_always_put_back():
  variables = [tf.Variable([1.0, 2.0]), tf.Variable(3.0)]
  before = _values(variables)
  with weights.swapped(variables, [[5.0, 6.0], 7.0]):
    np.testing.assert_array_equal(variables[0].numpy(), [5.0, 6.0])
  _assert_same(variables, before)
  # An error inside the context...
  with pytest.raises(RuntimeError, match="inside"):
    with weights.swapped(variables, [[0.0, 0.0], 0.0]):
      raise RuntimeError("inside")
  _assert_same(variables, before)

  # ... and a loader that fails halfway (a partial checkpoint restore).
  def half_restore():
    variables[0].assign([9.0, 9.0])
    raise ValueError("the second variable is missing")

  with pytest.raises(ValueError, match="missing"):
    with weights.swapped(variables, half_restore):
      pass
  _assert_same(variables, before)
  with weights.swapped(variables):  # nothing swapped in: put back all the same
    variables[1].assign(0.0)
  _assert_same(variables, before)


def test_the_evaluator_changes_no_variable_and_writes_nothing(tmp_path):
  trainer = training.Trainer(fx.model_config(), fx.train_config(train_steps=2),
                             str(tmp_path), strategy=fx.strategy(1))
  trainer.train(progress=False)
  variables = trainer.state.flow.variables
  def files():
    return sorted(os.path.relpath(os.path.join(folder, name), tmp_path)
                  for folder, _, names in os.walk(tmp_path) for name in names)

  before, written = _values(variables), files()
  evaluator = trainer.evaluator
  first = evaluator.bits_per_dim("validation", max_images=8)["bits_per_dim"]
  evaluator.typicality_reference(max_images=8)
  grid = evaluator.sample_grid(step=2)
  assert grid.ndim == 3 and np.isfinite(first)
  _assert_same(variables, before)
  assert files() == written
  # The same weights, the same seeded noise: the same figure.
  assert evaluator.bits_per_dim("validation", max_images=8)["bits_per_dim"] == first
  trainer.close()


class _TrainFigure:
  """A closing step of a user's own: the selected weights' bits/dim on the test split
  computed again, and on training images."""

  def __init__(self, trainer):
    self.trainer, self.weights_seen = trainer, None

  def __call__(self, end):
    evaluator = end.trainer.evaluator
    end.metrics["again_bits_per_dim"] = evaluator.bits_per_dim("test")["bits_per_dim"]
    end.metrics["train_images_bits_per_dim"] = evaluator.bits_per_dim(
        "train", max_images=16)["bits_per_dim"]
    self.weights_seen = _values(self.trainer.state.flow.trainable_variables)


def test_a_closing_step_of_ones_own_runs_with_the_selected_weights(tmp_path):
  # EMA on: the selected weights (the averages) differ from the flow's raw weights.
  config = fx.train_config(train_steps=4, ema_decay=0.5, learning_rate=5e-3,
                           export=False)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  trainer.train(progress=False)
  raw = _values(trainer.state.flow.trainable_variables)
  mine = _TrainFigure(trainer)
  metrics = trainer.finish([mine])
  # It saw the weights the test figure was computed with (the EMA ones)...
  assert metrics["again_bits_per_dim"] == pytest.approx(metrics["bits_per_dim"],
                                                        abs=1e-6)
  _assert_same(trainer.state.ema, mine.weights_seen)
  assert any(np.any(a != b) for a, b in zip(raw, mine.weights_seen, strict=True))
  # ... its figures are in metrics.json, and the raw weights are back afterwards.
  recorded = json.loads((tmp_path / "metrics.json").read_text())
  assert recorded["train_images_bits_per_dim"] == metrics["train_images_bits_per_dim"]
  _assert_same(trainer.state.flow.trainable_variables, raw)
  trainer.close()


def test_the_closing_steps_are_a_list_of_objects():
  trainer = object.__new__(training.Trainer)  # the list needs only the two configs
  trainer.model_config = fx.model_config()
  trainer.config = fx.train_config(export=True)
  kinds = [type(step) for step in trainer.closing_steps()]
  assert kinds == [closing.ReestimateBatchNorm, closing.ValidateLastWeights,
                   closing.WithSelectedWeights]
  selected = [type(step) for step in trainer.closing_steps()[-1].steps]
  assert selected == [closing.TestFigure, closing.RequireFinite,
                      closing.TypicalityReference, closing.RunRecord,
                      closing.WriteMetrics, closing.Export]
