"""The checkpoints of a run: what they hold, how many are kept, and restoring the newest
one that restores."""

import glob
import os
import re

from absl import logging
import tensorflow as tf

from realnvp_tf.data import errors

MAX_CHECKPOINTS = 3


def make_checkpoint(flow, step, optimizer=None, nonfinite_total=None, ema=None,
                    loss_scale=None):
  """The checkpoint of a run: the flow (weights and batch-norm statistics), the step,
  and when training the optimizer, the skipped-step count, the EMA weights and a
  float16 run's loss scale."""
  parts = dict(flow=flow, step=step)
  for name, value in [("optimizer", optimizer), ("nonfinite_total", nonfinite_total),
                      ("ema", ema), ("loss_scale", loss_scale)]:
    if value is not None:
      parts[name] = value
  return tf.train.Checkpoint(**parts)


def make_manager(checkpoint, directory):
  """The manager of a run's checkpoints in `directory` (the latest MAX_CHECKPOINTS)."""
  return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=MAX_CHECKPOINTS)


def checkpoints_newest_first(directory):
  """The checkpoint prefixes in `directory`, newest (highest number) first: those the
  state file lists and those whose index file is there (the state file may be lost)."""
  found = set()
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError):  # an unreadable state file
    state = None
  if state is not None:
    found.update(os.path.join(directory, os.path.basename(path))
                 for path in state.all_model_checkpoint_paths)
  found.update(path[:-len(".index")]
               for path in glob.glob(os.path.join(directory, "ckpt-*.index")))
  number = lambda path: int(re.search(r"-(\d+)$", path).group(1))
  return sorted((p for p in found if re.search(r"-\d+$", p)), key=number, reverse=True)


def restore_newest(checkpoint, directory, partial=False, warn=True):
  """Restores the newest checkpoint of `directory` that restores; returns its path, or
  None when there is none.

  A checkpoint that fails (a truncated or unreadable file after a full disk or a
  partial copy) is skipped, with one warning line unless `warn` is False. If
  checkpoints exist and none restores, a one-line ValueError names the directory.
  `checkpoint` may also be a function of the path that returns the checkpoint object
  to restore it with.
  """
  candidates = checkpoints_newest_first(directory)
  failures = []
  for path in candidates:
    try:
      target = checkpoint(path) if callable(checkpoint) else checkpoint
      status = target.restore(path)
      if partial:
        status.expect_partial()
      status.assert_existing_objects_matched()
    except Exception as e:  # pylint: disable=broad-except
      # Corrupt files fail in many ways (DataLossError, IndexError from the
      # reader, ...); whatever it is, this checkpoint cannot be used.
      reason = errors.first_line(e)
      failures.append(f"{os.path.basename(path)}: {reason}")
      if warn:
        logging.warning("Skipped checkpoint %s: it cannot be restored (%s).", path,
                        reason)
      continue
    return path
  if failures:
    raise ValueError(
        f"No checkpoint in {directory} can be restored ({'; '.join(failures)}); move "
        f"the directory aside or pass a new model_dir.")
  return None
