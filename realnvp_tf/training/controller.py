"""The outer training loop: steps, then actions, until a step count or a stop condition.

As in orbit's `Controller`, the step, the loop's cadence and what happens between steps
are separate: the loop calls a step function, then every action with each step's
output, then asks the stop conditions whether to stop. A checkpoint, an evaluation, a
log line or a preemption save is an action (`training.actions`), added to the list,
not written into the loop.

Steps run `steps_per_loop` at a time in one call of the step function (one host
round trip per call, as orbit's `steps_per_loop` and Keras's `steps_per_execution`).
An action that needs the training state at given steps (a checkpoint, an
evaluation) says when with `next_due(step)`, and no call runs past that step; the
stop conditions are asked between calls.
"""

import dataclasses
import time
from typing import Callable, Iterable, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class StepResult:
  """What actions see of each step (Python values)."""
  step: int  # the step just taken (1 for the first)
  bits: float  # the batch's mean bits/dim
  grad_norm: float  # global gradient norm before clipping
  finite: bool  # whether the update was applied (False: skipped)
  overflow: bool = False  # skipped for a float16 overflow (the loss scale was halved)
  loss_scale: float = 1.0  # the loss scale of the step (1 without loss scaling)
  learning_rate: float = float("nan")  # the learning rate of the step
  time: float = 0.0  # when the step ended (time.perf_counter(), spread over its call)
  current: bool = True  # whether the training state is this step's (the last of a call)


Action = Callable[[StepResult], None]
StopCondition = Callable[[], bool]


class Controller:
  """Runs `step_fn` until `step_variable` reaches a count or a stop condition holds.

  Args:
    step_fn: `(iterator, num_steps) -> training.step.StepOutput` of vectors: up to
      `num_steps` optimizer steps (it may take fewer, e.g. after too many non-finite
      steps in a row).
    step_variable: the step counter `step_fn` increments.
    actions: called in order with every step's `StepResult`, after the call that took
      it; each keeps its own cadence. One that needs the training state at certain
      steps has `next_due(step)`: the next step after `step` it needs (or None). An
      action may raise to end training.
    stop_conditions: called after each call's actions; the first that returns True
      stops the loop.
    steps_per_loop: the most steps per call of `step_fn`.
  """

  def __init__(self, step_fn, step_variable, actions: Iterable[Action] = (),
               stop_conditions: Iterable[StopCondition] = (), steps_per_loop=1):
    if steps_per_loop <= 0:
      raise ValueError(f"steps_per_loop must be positive; got {steps_per_loop}.")
    self.step_fn = step_fn
    self.step_variable = step_variable
    self.actions = tuple(actions)
    self.stop_conditions = tuple(stop_conditions)
    self.steps_per_loop = int(steps_per_loop)

  def loop_size(self, step, until_step):
    """Steps of the next call from `step`: at most `steps_per_loop`, never past
    `until_step` or a step an action is due at."""
    ends = [until_step, step + self.steps_per_loop]
    for action in self.actions:
      due = getattr(action, "next_due", lambda unused_step: None)(step)
      if due is not None and due > step:
        ends.append(due)
    return min(ends) - step

  def run(self, iterator, until_step) -> Optional[StopCondition]:
    """Steps until `until_step`; returns the stop condition that ended it early, or
    None when the step count was reached."""
    step = int(self.step_variable.numpy())
    while step < until_step:
      started = time.perf_counter()
      out = self.step_fn(iterator, self.loop_size(step, until_step))
      # The call's one host transfer: every field of the StepOutput, as numpy vectors.
      values = {name: np.asarray(value) for name, value in out._asdict().items()}
      ended = time.perf_counter()
      taken = len(values["bits"])
      if not taken:  # e.g. a step function that stops on non-finite steps
        raise RuntimeError(f"The training step took no step at step {step}.")
      step = int(self.step_variable.numpy())
      for i in range(taken):
        result = StepResult(
            step=step - taken + i + 1, bits=float(values["bits"][i]),
            grad_norm=float(values["grad_norm"][i]),
            finite=bool(values["finite"][i]), overflow=bool(values["overflow"][i]),
            loss_scale=float(values["loss_scale"][i]),
            learning_rate=float(values["learning_rate"][i]),
            time=started + (ended - started) * (i + 1) / taken,
            current=i == taken - 1)
        for action in self.actions:
          action(result)
      for condition in self.stop_conditions:
        if condition():
          return condition
    return None
