"""The best validation figure of a run and its weights, kept in model_dir/best/."""

import json
import os

import tensorflow as tf

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
    path = os.path.join(self.read_dir, BEST_FILE)
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        saved = json.load(f)
      self.step, self.value = saved["step"], saved["validation_bits_per_dim"]

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
    """Puts the best weights (and statistics) into the flow."""
    latest = tf.train.latest_checkpoint(self.read_dir)
    if latest is None:
      raise ValueError(f"{self.read_dir} holds no checkpoint.")
    self.checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()


def _write_json_atomically(path, value):
  temporary = f"{path}.tmp"
  with tf.io.gfile.GFile(temporary, "w") as f:
    json.dump(value, f, indent=2)
  tf.io.gfile.rename(temporary, path, overwrite=True)
