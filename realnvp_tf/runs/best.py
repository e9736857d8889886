"""The best validation figure of a run and its weights, kept in model_dir/best/."""

import json
import os

from absl import logging
import tensorflow as tf

from realnvp_tf.data import errors
from realnvp_tf.runs import checkpoints
from realnvp_tf.runs import directory as directory_lib

BEST_FILE = "best.json"


class BestCheckpoint:
  """The best validation figure of a run so far and the weights that gave it.

  `model_dir/best/` holds one checkpoint of the flow (the weights evaluated, EMA ones
  when EMA is on, with their batch-norm statistics) and `best.json` (its step and
  figure), so the best survives a resume. Lower is better (bits/dim).
  """

  def __init__(self, run_directory, flow):
    self.read_dir = os.path.join(run_directory.path, directory_lib.BEST_DIR)
    self.write_dir = os.path.join(run_directory.write_path, directory_lib.BEST_DIR)
    self.is_chief = run_directory.is_chief
    self.checkpoint = tf.train.Checkpoint(flow=flow)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir,
                                              max_to_keep=1)
    self.step, self.value = None, float("inf")
    if tf.io.gfile.exists(os.path.join(self.read_dir, BEST_FILE)):
      try:
        self.step, self.value = read_best(self.read_dir)
      except ValueError as e:
        logging.warning("%s; the best weights are kept afresh from the next "
                        "validation on.", e)

  def offer(self, step, value):
    """Keeps the flow's current weights if `value` beats the best; returns whether."""
    if not value < self.value:  # a NaN never wins
      return False
    self.manager.save(checkpoint_number=step)
    self.step, self.value = step, float(value)
    if self.is_chief:
      _write_json_atomically(os.path.join(self.write_dir, BEST_FILE),
                             {"step": step, "validation_bits_per_dim": self.value})
    return True

  def restore(self):
    """Puts the best weights (and statistics) into the flow; a one-line ValueError
    when best/ holds none that restores."""
    restore(self.checkpoint, self.read_dir)


def read_best(best_dir):
  """(step, validation bits/dim) of best_dir/best.json; a one-line ValueError when it
  is missing or unreadable."""
  path = os.path.join(best_dir, BEST_FILE)
  try:
    with tf.io.gfile.GFile(path) as f:
      saved = json.load(f)
    return int(saved["step"]), float(saved["validation_bits_per_dim"])
  except (tf.errors.OpError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path} cannot be read ({type(e).__name__}: "
                     f"{errors.first_line(e)})") from None


def restore(checkpoint, best_dir):
  """Restores the flow of `checkpoint` from best_dir; returns (checkpoint path, step,
  validation bits/dim), or raises a one-line ValueError saying why it cannot."""
  step, value = read_best(best_dir)
  try:
    path = checkpoints.restore_newest(checkpoint, best_dir, partial=True, warn=False)
  except ValueError:
    path = None
  if path is None:
    raise ValueError(f"{best_dir} holds no checkpoint that restores")
  return path, step, value


def _write_json_atomically(path, value):
  temporary = f"{path}.tmp"
  with tf.io.gfile.GFile(temporary, "w") as f:
    json.dump(value, f, indent=2)
  tf.io.gfile.rename(temporary, path, overwrite=True)
