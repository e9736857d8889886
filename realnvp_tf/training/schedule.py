"""The learning-rate schedule: a linear warm-up, then a decay to the end of training.

    warm(s)   = min(1, (s + 1) / W)                        (1 when W = 0)
    D         = H - p (H - W)                              (the decay's start)
    f(s)      = clip((s + 1 - D) / (H - D), 0, 1)
    lr(s)     = peak * warm(s) * d(f(s)),  d(f) = 1                  "none"
                                                  (1 + cos(pi f)) / 2 "cosine"
                                                  1 - f               "linear"

for optimizer step s (0 for the first), W warm-up steps, horizon H (the step the
decay reaches zero at) and decay fraction p: the decay takes the last share p of the
steps after the warm-up (p = 1: all of them; p = 0.2: the rate stays at its peak for
the first 80%, a "warm-up, stable, decay" schedule). H is a variable: `train_steps`
for a run that ends at a step count; for a run with a time budget,
`actions.BudgetHorizon` sets it to the steps the remaining time allows, re-estimated
from the run's own pace, so the decay ends at the deadline.
"""

import math

import keras
import tensorflow as tf

DECAYS = ("none", "cosine", "linear")


def check_decay(decay, decay_fraction):
  """Raises ValueError unless `decay` is one of `DECAYS` and `decay_fraction` is in
  (0, 1] (`TrainConfig` calls it too, so a bad config fails before anything is
  built)."""
  if decay not in DECAYS:
    raise ValueError(f"decay must be one of {DECAYS}; got {decay!r}.")
  if not 0.0 < decay_fraction <= 1.0:
    raise ValueError(f"decay_fraction must be in (0, 1]; got {decay_fraction}.")


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up to `learning_rate`, then `decay` to zero at `horizon`.

  Args:
    learning_rate: the peak rate.
    warmup_steps: steps of the linear warm-up from 0 (0: none).
    decay: one of `DECAYS`.
    horizon: a float32 `tf.Variable` (or a number): the step the decay ends at.
    decay_fraction: the share of the steps after the warm-up that the decay takes,
      at their end, in (0, 1].
  """

  def __init__(self, learning_rate, warmup_steps=0, decay="none", horizon=None,
               decay_fraction=1.0):
    check_decay(decay, decay_fraction)
    if decay != "none" and horizon is None:
      raise ValueError(f"decay={decay!r} needs a horizon (the step it ends at).")
    self.learning_rate = learning_rate
    self.warmup_steps = warmup_steps
    self.decay = decay
    self.horizon = horizon
    self.decay_fraction = decay_fraction

  def __call__(self, step):
    step = tf.cast(step, tf.float32) + 1.0
    rate = tf.constant(self.learning_rate, tf.float32)
    if self.warmup_steps:
      rate *= tf.minimum(1.0, step / float(self.warmup_steps))
    if self.decay == "none":
      return rate
    horizon = tf.cast(self.horizon, tf.float32)
    length = tf.maximum(self.decay_fraction * (horizon - self.warmup_steps), 1.0)
    done = tf.clip_by_value((step - (horizon - length)) / length, 0.0, 1.0)
    if self.decay == "cosine":
      return rate * 0.5 * (1.0 + tf.cos(math.pi * done))
    return rate * (1.0 - done)

  def get_config(self):
    horizon = self.horizon
    if isinstance(horizon, tf.Variable):
      horizon = float(horizon.numpy())
    return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
            "decay": self.decay, "horizon": horizon,
            "decay_fraction": self.decay_fraction}
