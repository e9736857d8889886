"""What happens between training steps: actions and stop conditions for `Controller`.

An action is called with each step's `controller.StepResult` and keeps its own cadence;
one that needs the training state at certain steps (a checkpoint, an evaluation) has
`next_due(step)`, and the controller ends a multi-step call there (the result of the
step the state is at has `current` set). A stop condition is called after the actions
and returns True to end the loop. A
stop condition with `interrupts = True` (a signal) ends training without finishing it:
the trainer saves a checkpoint and exits; others (a time budget) end it as if the step
count had been reached (`BudgetHorizon` fits the learning-rate decay to a time
budget). An action that saved a checkpoint itself (a preemption) ends
training by raising `Interrupted`.
"""

import collections
import signal
import threading
import time

from absl import logging
import tensorflow as tf


class NonFiniteLossError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


class Interrupted(Exception):
  """Raised by an action to end training without finishing it, after it saved a
  checkpoint of `step`."""

  def __init__(self, step, reason):
    super().__init__(f"{reason}: checkpoint saved at step {step}; stopping.")
    self.step = step


def _due(step, every, last_step=None):
  return step % every == 0 or step == last_step


def _next_multiple(step, every):
  return (step // every + 1) * every


class _Rate:
  """Images per second between two steps (by their `StepResult.time`)."""

  def __init__(self, batch_size):
    self.batch_size = batch_size
    self._time, self._step = time.perf_counter(), None

  def __call__(self, step, now=None):
    now = time.perf_counter() if now is None else now
    rate = (0.0 if self._step is None else
            (step - self._step) * self.batch_size / max(now - self._time, 1e-9))
    self._time, self._step = now, step
    return rate


class NonFiniteGuard:
  """Logs each skipped step; stops training after `max_steps` consecutive non-finite
  ones. A float16 overflow (the loss scale halved) is logged at INFO and not counted:
  early in training it is expected."""

  def __init__(self, streak_variable, max_steps, checkpoint_dir):
    self.streak_variable = streak_variable
    self.max_steps = max_steps
    self.checkpoint_dir = checkpoint_dir

  def __call__(self, result):
    if result.finite:
      return
    if result.overflow:
      logging.info("Step %d: float16 gradients overflowed at loss scale %g; update "
                   "skipped, scale halved.", result.step, result.loss_scale)
      return
    streak = int(self.streak_variable.numpy()) if result.current else 0
    if streak >= self.max_steps:
      raise NonFiniteLossError(
          f"{streak} consecutive steps had a non-finite loss or gradient (last at step "
          f"{result.step}); stopped. The last checkpoint in {self.checkpoint_dir} "
          f"holds the last good weights. Lower learning_rate or add warmup_steps.")
    logging.warning("Step %d: non-finite loss or gradient; update skipped.",
                    result.step)


class LossTracker:
  """The training loss of the last `tail` applied (finite) steps."""

  def __init__(self, tail=1):
    self.recent = collections.deque(maxlen=tail)

  def __call__(self, result):
    if result.finite:
      self.recent.append(result.bits)

  @property
  def last(self):
    return self.recent[-1] if self.recent else float("nan")

  @property
  def mean(self):
    return sum(self.recent) / len(self.recent) if self.recent else float("nan")


class TrainSummaries:
  """TensorBoard scalars every `every` steps and at `last_step`: the batch's bits/dim,
  gradient norm, learning rate, images/s, the count of skipped non-finite steps and,
  with `loss_scaling`, the loss scale. All come from the steps' results, so a
  multi-step call needs not end at them."""

  def __init__(self, writer, state, batch_size, every, last_step, loss_scaling=False):
    self.writer = writer
    self.every, self.last_step = every, last_step
    self.loss_scaling = loss_scaling
    self._nonfinite = int(state.nonfinite_total.numpy())
    self._rate = _Rate(batch_size)
    self._rate(int(state.step.numpy()))

  def __call__(self, result):
    self._nonfinite += not (result.finite or result.overflow)
    if not _due(result.step, self.every, self.last_step):
      return
    with self.writer.as_default(step=result.step):
      tf.summary.scalar("bits_per_dim", result.bits)
      tf.summary.scalar("grad_norm", result.grad_norm)
      tf.summary.scalar("learning_rate", result.learning_rate)
      tf.summary.scalar("images_per_second", self._rate(result.step, result.time))
      tf.summary.scalar("nonfinite_steps", self._nonfinite)
      if self.loss_scaling:
        tf.summary.scalar("loss_scale", result.loss_scale)


class ShowProgress:
  """A Keras progress bar: the last applied step's bits/dim, images/s and, when
  `validation()` gives one, the latest validation bits/dim."""

  def __init__(self, bar, batch_size, every, last_step, start_step,
               validation=lambda: None):
    self.bar, self.every, self.last_step = bar, every, last_step
    self.validation = validation
    self._rate = _Rate(batch_size)
    self._rate(start_step)
    self._loss = LossTracker()
    bar.update(start_step)

  def __call__(self, result):
    self._loss(result)
    if _due(result.step, self.every, self.last_step):
      values = [("bits/dim", self._loss.last),
                ("images/s", self._rate(result.step, result.time))]
      if self.validation() is not None:
        values.append(("val bits/dim", self.validation()))
      self.bar.update(result.step, values)


class SaveCheckpoint:
  """A checkpoint every `every` steps."""

  def __init__(self, manager, every):
    self.manager, self.every = manager, every

  def next_due(self, step):
    return _next_multiple(step, self.every)

  def __call__(self, result):
    if result.current and _due(result.step, self.every):
      self.manager.save(checkpoint_number=result.step)


class PeriodicEvaluation:
  """`evaluate(step)` every `every` steps before `last_step` (the final evaluation is
  the trainer's); every = 0 turns it off."""

  def __init__(self, evaluate, every, last_step):
    self.evaluate, self.every, self.last_step = evaluate, every, last_step

  def next_due(self, step):
    return _next_multiple(step, self.every) if self.every else None

  def __call__(self, result):
    if (self.every and result.current and _due(result.step, self.every)
        and result.step < self.last_step):
      self.evaluate(result.step)


class SaveCheckpointIfPreempted:
  """Preemption of a multi-worker run: a SIGTERM to any worker makes every worker save
  a checkpoint at the same step and stop (TensorFlow's PreemptionCheckpointHandler,
  as orbit's action of the same name uses it); raises `Interrupted` then.

  The handler agrees on the step through the cluster's coordination service and
  takes over SIGTERM in this process; the chief's checkpoint lands in the run
  directory, the others' in their temporary ones.
  """

  def __init__(self, cluster_resolver, manager):
    self.saved = False

    def exit_fn():
      self.saved = True

    self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        cluster_resolver, manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            exit_fn=exit_fn))

  def __call__(self, result):
    if not result.current:  # checked between calls, where the state is this step's
      return
    self.handler.save_checkpoint_if_preempted(checkpoint_number=result.step)
    if self.saved:
      raise Interrupted(result.step, "Preempted (SIGTERM to a worker)")


class SignalStop:
  """A stop condition that holds once SIGTERM or SIGINT arrived (a context manager:
  the handlers are installed on entry, the previous ones put back on exit).

  Only the main thread can install signal handlers: entered in another thread (a
  notebook's worker, a thread pool), it installs none and says so in one warning.
  """

  interrupts = True

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self.signals = signals
    self.received = None
    self._previous = {}

  def __enter__(self):
    def handler(signum, frame):
      del frame
      self.received = signum

    if threading.current_thread() is not threading.main_thread():
      # Python lets only the main thread install signal handlers.
      logging.warning(
          "Training runs outside the main thread (%s): SIGTERM and SIGINT cannot be "
          "caught here, so they will not save a checkpoint before stopping; the "
          "periodic checkpoints (checkpoint_every) still are. Run fit() in the main "
          "thread for that.", threading.current_thread().name)
      return self
    for signum in self.signals:
      self._previous[signum] = signal.signal(signum, handler)
    return self

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    return False

  def __call__(self):
    return self.received is not None

  @property
  def reason(self):
    return f"Signal {self.received}"


class TimeBudget:
  """A stop condition that holds once `seconds` have passed since it was made."""

  interrupts = False

  def __init__(self, seconds):
    self.deadline = time.perf_counter() + seconds

  def __call__(self):
    return time.perf_counter() >= self.deadline


class BudgetHorizon:
  """Fits the learning-rate decay to a `TimeBudget`: after each call, the schedule's
  horizon (`TrainState.horizon`) becomes the step the remaining time allows at the
  run's pace so far, evaluations and checkpoints included; never past `last_step`.

  The pace is measured from the end of the first call, whose tracing would make it
  look slow; until then the horizon stays at `last_step` (the warm-up, if any, runs
  meanwhile). Re-estimated every call, the decay ends at the deadline even when the
  pace changes.
  """

  def __init__(self, budget, horizon, last_step):
    self.budget, self.horizon, self.last_step = budget, horizon, last_step
    self._start = None  # (step, time) at the end of the first call

  def __call__(self, result):
    if not result.current:
      return
    if self._start is None:
      self._start = (result.step, result.time)
      return
    steps, seconds = result.step - self._start[0], result.time - self._start[1]
    if seconds <= 0:
      return
    remaining = max(0.0, self.budget.deadline - result.time)
    self.horizon.assign(min(float(self.last_step),
                            result.step + steps / seconds * remaining))
