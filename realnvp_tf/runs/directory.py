"""A training run's directory: its layout, its lock, config.json and metrics.json.

    model_dir/
      config.json    the run's RealNVPConfig and TrainConfig
      checkpoints/   the latest checkpoints (ckpt-STEP), tf.train.CheckpointManager's
      best/          the weights of the best validation figure, and best.json
      metrics.json   the final figures
      train/, validation/, test/  TensorBoard logs
      export/        the SavedModel

Training, evaluation from checkpoints and `realnvp_tf.load` all go through this module
(and `checkpoints`, `best`), so the layout is written down once.
"""

import dataclasses
import fcntl
import json
import os
import shutil
import socket
import tempfile

import tensorflow as tf

from realnvp_tf.model.config import RealNVPConfig
from realnvp_tf.runs import checkpoints

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
BEST_DIR = "best"
LOCK_FILE = ".lock"


class RunDirectory:
  """The paths of one run. A worker that is not the chief writes to a temporary
  directory of its own (removed by `close`), never to `path`."""

  def __init__(self, path, is_chief=True):
    self.path = os.fspath(path)
    self.is_chief = is_chief
    self.write_path = (self.path if is_chief else
                       tempfile.mkdtemp(prefix="realnvp_worker_"))
    self._lock = None

  @property
  def checkpoint_dir(self):
    """Where this worker writes checkpoints."""
    return os.path.join(self.write_path, CHECKPOINT_DIR)

  @property
  def export_dir(self):
    return os.path.join(self.write_path, EXPORT_DIR)

  def log_dir(self, name):
    return os.path.join(self.write_path, name)

  def open_for_writing(self):
    """Makes sure the chief can write the run directory and takes its lock.

    Raises a one-line ValueError when the path is a file, cannot be created or
    written, or another process holds the lock (it is released when that process
    ends, however it ends).
    """
    if not self.is_chief:
      return
    _check_writable(self.path)
    lock = open(os.path.join(self.path, LOCK_FILE), "a+")
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      lock.seek(0)
      holder = lock.read().strip() or "another process"
      lock.close()
      raise ValueError(
          f"model_dir={self.path} is in use by another training run ({holder}); "
          f"wait for it to end, or pass another model_dir.") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    lock.flush()
    self._lock = lock

  def checkpoints(self):
    """The run's checkpoints (in `path`: the chief's), newest first."""
    return checkpoints.checkpoints_newest_first(os.path.join(self.path, CHECKPOINT_DIR))

  def latest_checkpoint(self):
    """The run's latest checkpoint, or None."""
    return next(iter(self.checkpoints()), None)

  def write_config(self, model_config, train_config, data=None):
    """config.json (chief only): the model config, the training settings and what
    defines the data (`data.fingerprint`)."""
    if self.is_chief:
      write_run_config(self.path, model_config, train_config, data)

  def write_metrics(self, metrics):
    if self.is_chief:
      with tf.io.gfile.GFile(os.path.join(self.path, METRICS_FILE), "w") as f:
        json.dump(metrics, f, indent=2)

  def close(self):
    if self._lock is not None:
      self._lock.close()  # releases the lock
      self._lock = None
    if not self.is_chief:
      shutil.rmtree(self.write_path, ignore_errors=True)


def _check_writable(path):
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"model_dir={path} is a file, not a directory; pass a "
                     f"directory (it is created if missing).")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise ValueError(f"model_dir={path} cannot be created or written "
                     f"({e.strerror}); pass a directory you can write to.") from None


def write_run_config(model_dir, model_config, train_config, data=None):
  """model_dir/config.json: what is needed to rebuild the model from checkpoints
  (both configs are dataclasses), and the data's fingerprint."""
  tf.io.gfile.makedirs(model_dir)
  values = {"model": dataclasses.asdict(model_config),
            "train": dataclasses.asdict(train_config)}
  if data is not None:
    values["data"] = data
  with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE), "w") as f:
    json.dump(values, f, indent=2)


def read_run_config(model_dir):
  """The (RealNVPConfig, dict of the training settings) that `write_run_config`
  wrote (`training.TrainConfig(**settings)` rebuilds the training config); see
  `read_data_fingerprint` for the data."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{model_dir} is not a training directory of train.py: "
                     f"{path} is missing.")
  with tf.io.gfile.GFile(path) as f:
    values = json.load(f)
  return RealNVPConfig(**values["model"]), dict(values["train"])


def read_data_fingerprint(model_dir):
  """The data fingerprint config.json records (None for runs from before it did)."""
  with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE)) as f:
    return json.load(f).get("data")
