"""The learning-rate schedule (warm-up, cosine/linear decay to a horizon) and the
time budget that sets the horizon (`--train_minutes`)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from realnvp_tf import training
from realnvp_tf.training import actions
from realnvp_tf.training import controller
from realnvp_tf.training import schedule

import trainer_fixtures as fx


def _expected(step, peak, warmup, decay, horizon, fraction=1.0):
  # The formula written out per step, in Python floats (s counted from 1).
  s = step + 1
  rate = peak * (min(1.0, s / warmup) if warmup else 1.0)
  start = horizon - fraction * (horizon - warmup)
  done = min(1.0, max(0.0, (s - start) / max(horizon - start, 1.0)))
  factor = {"none": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * done)),
            "linear": 1.0 - done}[decay]
  return rate * factor


@pytest.mark.parametrize("decay", schedule.DECAYS)
@pytest.mark.parametrize("warmup", [0, 4])
def test_schedule_matches_the_formula_and_follows_its_horizon(decay, warmup):
  horizon = tf.Variable(20.0)
  lr = schedule.WarmupDecay(2e-3, warmup, decay, horizon)
  traced = tf.function(lr)  # the horizon is read, not baked into the trace
  for value in (20.0, 12.0):
    horizon.assign(value)
    got = [float(traced(tf.constant(step, tf.int64))) for step in range(25)]
    want = [_expected(step, 2e-3, warmup, decay, value) for step in range(25)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
  if decay != "none":
    assert got[11] == pytest.approx(0.0, abs=1e-9) and got[-1] == 0.0
  assert got[0] > 0


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_a_decay_fraction_keeps_the_peak_until_the_decay_starts(decay):
  horizon = tf.Variable(44.0)
  lr = schedule.WarmupDecay(1e-3, 4, decay, horizon, decay_fraction=0.25)
  got = [float(lr(tf.constant(step, tf.int64))) for step in range(46)]
  want = [_expected(step, 1e-3, 4, decay, 44.0, 0.25) for step in range(46)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
  # 40 steps after the warm-up: the peak through step 34 (s = 34), then 10 decaying.
  assert got[3:34] == pytest.approx([1e-3] * 31)
  assert 0 < got[38] < 1e-3 and got[43] == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match="decay_fraction must be in"):
    schedule.WarmupDecay(1e-3, 4, decay, horizon, decay_fraction=0.0)


@pytest.mark.parametrize("decay, fraction", [("cosine", 0.2), ("linear", 1.0)])
def test_a_trainer_steps_at_the_configured_decay_and_fraction(tmp_path, decay,
                                                              fraction):
  # The rates a Trainer's steps actually used (the config's decay and fraction must
  # reach its optimizer): 30 steps, 5 of warm-up, so a 0.2 decay takes the last 5.
  steps, warmup, peak = 30, 5, 2e-3
  trainer = training.Trainer(fx.model_config(), fx.train_config(
      train_steps=steps, warmup_steps=warmup, learning_rate=peak, decay=decay,
      decay_fraction=fraction, steps_per_loop=steps), str(tmp_path))
  try:
    got = trainer.step_fn(iter(trainer.train_dataset(0)), steps).learning_rate.numpy()
  finally:
    trainer.close()
  want = [_expected(step, peak, warmup, decay, steps, fraction)
          for step in range(steps)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
  assert got[-1] == pytest.approx(0.0, abs=1e-9) and got[0] == pytest.approx(peak / 5)
  if fraction == 0.2:  # at the peak until step 24 (s = 25), decaying from step 25 on
    assert got[warmup - 1:25] == pytest.approx([peak] * (26 - warmup))
    assert got[25] < peak
  else:  # decaying from the end of the warm-up
    assert got[warmup] < peak and got[15] == pytest.approx(peak * (1 - 11 / 25))


def test_schedule_refuses_unknown_decays_and_a_decay_without_horizon():
  with pytest.raises(ValueError, match="decay must be one of"):
    schedule.WarmupDecay(1e-3, 0, "exponential", 10.0)
  with pytest.raises(ValueError, match="needs a horizon"):
    schedule.WarmupDecay(1e-3, 0, "cosine")
  with pytest.raises(ValueError, match="decay must be one of"):
    fx.train_config(decay="step")
  with pytest.raises(ValueError, match="decay_fraction must be in"):
    fx.train_config(decay_fraction=1.5)
  with pytest.raises(ValueError, match="train_minutes must be >= 0"):
    fx.train_config(train_minutes=-1.0)


class _Budget:
  deadline = 100.0


def test_budget_horizon_is_the_steps_the_remaining_time_allows():
  horizon = tf.Variable(1000.0)
  fit = actions.BudgetHorizon(_Budget(), horizon, last_step=1000)

  def result(step, t, current=True):
    return controller.StepResult(step, 1.0, 1.0, True, time=t, current=current)

  fit(result(1, 30.0))  # the first call traces: its end is the pace's origin
  assert float(horizon.numpy()) == 1000.0
  fit(result(5, 34.0, current=False))  # mid-call results are not looked at
  assert float(horizon.numpy()) == 1000.0
  fit(result(11, 40.0))  # 10 steps in 10 s, 60 s left: 60 more steps
  assert float(horizon.numpy()) == pytest.approx(71.0)
  fit(result(31, 70.0))  # slower (evaluations): 30 steps in 40 s, 30 s left
  assert float(horizon.numpy()) == pytest.approx(31 + 30 / 40 * 30)
  fit(result(60, 120.0))  # past the deadline: the horizon is the current step
  assert float(horizon.numpy()) == pytest.approx(60.0)
  capped = tf.Variable(50.0)
  fit = actions.BudgetHorizon(_Budget(), capped, last_step=50)
  fit(result(1, 10.0))
  fit(result(2, 10.1))  # 10 steps/s for 90 s: more than train_steps allows
  assert float(capped.numpy()) == 50.0


class _Rates:
  def __init__(self):
    self.results = []

  def __call__(self, result):
    self.results.append(result)


def test_a_time_budget_ends_training_with_the_decay_and_finishes_the_run(tmp_path):
  # A run with --train_minutes stops on its clock (train_steps is out of reach), its
  # cosine decay ends near zero at the deadline, and it is finished as a run that
  # reached train_steps: validated, tested, metrics written.
  config = fx.train_config(train_steps=10**6, train_minutes=0.15, decay="cosine",
                           learning_rate=2e-3, checkpoint_every=10**6,
                           log_every=100)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path / "run"))
  # One step traced before the clock starts: on a loaded machine the trace alone can
  # take the whole budget.
  trainer.step_fn(iter(trainer.train_dataset(0)), 1)
  rates = _Rates()
  try:
    stopped = trainer.train([rates], progress=False)
    assert isinstance(stopped, actions.TimeBudget)
    metrics = trainer.finish()
  finally:
    trainer.close()
  steps = rates.results[-1].step
  assert 10 < steps < 10**6 and metrics["step"] == steps
  lrs = [r.learning_rate for r in rates.results]
  assert lrs[0] == pytest.approx(2e-3, rel=1e-3)  # the horizon starts far away
  # Decaying to the end: the last step's rate is a small fraction of the peak, and
  # the rate fell over the run.
  assert lrs[-1] < 0.25 * 2e-3, lrs[-10:]
  assert lrs[len(lrs) // 2] > lrs[-1]
  assert float(trainer.state.horizon.numpy()) < 10**6
  assert (tmp_path / "run" / "metrics.json").exists()
  assert math.isfinite(metrics["bits_per_dim"])
