"""The outer training loop: steps, then actions, until a step count or a stop condition.

As in orbit's `Controller`, the step, the loop's cadence and what happens between steps
are separate: the loop calls a step function, then every action with the step's
output, then asks the stop conditions whether to stop. A checkpoint, an evaluation, a
log line or a preemption save is an action (`training.actions`), added to the list,
not written into the loop.
"""

import dataclasses
from typing import Callable, Iterable, Optional


@dataclasses.dataclass(frozen=True)
class StepResult:
  """What actions see after each step (Python values)."""
  step: int  # the step just taken (1 for the first)
  bits: float  # the batch's mean bits/dim
  grad_norm: float  # global gradient norm before clipping
  finite: bool  # whether the update was applied (False: skipped)


Action = Callable[[StepResult], None]
StopCondition = Callable[[], bool]


class Controller:
  """Runs `step_fn` until `step_variable` reaches a count or a stop condition holds.

  Args:
    step_fn: `iterator -> (bits, grad_norm, finite)` tensors; one optimizer step.
    step_variable: the step counter `step_fn` increments.
    actions: called in order after every step with its `StepResult`; each keeps its
      own cadence. An action may raise to end training.
    stop_conditions: called after the actions; the first that returns True stops
      the loop.
  """

  def __init__(self, step_fn, step_variable, actions: Iterable[Action] = (),
               stop_conditions: Iterable[StopCondition] = ()):
    self.step_fn = step_fn
    self.step_variable = step_variable
    self.actions = tuple(actions)
    self.stop_conditions = tuple(stop_conditions)

  def run(self, iterator, until_step) -> Optional[StopCondition]:
    """Steps until `until_step`; returns the stop condition that ended it early, or
    None when the step count was reached."""
    step = int(self.step_variable.numpy())
    while step < until_step:
      bits, grad_norm, finite = self.step_fn(iterator)
      step = int(self.step_variable.numpy())
      result = StepResult(step, float(bits), float(grad_norm), bool(finite))
      for action in self.actions:
        action(result)
      for condition in self.stop_conditions:
        if condition():
          return condition
    return None
