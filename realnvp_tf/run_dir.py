"""A training run's directory: its files, the one checkpoint layout, and restoring it.

    model_dir/
      config.json    the run's RealNVPConfig and TrainConfig
      checkpoints/   the latest checkpoints (ckpt-STEP), tf.train.CheckpointManager's
      best/          the weights of the best validation figure, and best.json
      metrics.json   the final figures
      train/, validation/, test/  TensorBoard logs
      export/        the SavedModel

Training, evaluation from checkpoints and `realnvp_tf.load` all go through this module,
so the layout is written down once.
"""

import dataclasses
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import tempfile

from absl import logging
import tensorflow as tf

from realnvp_tf import flow as flow_lib
from realnvp_tf.config import RealNVPConfig
from realnvp_tf.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
BEST_DIR = "best"
BEST_FILE = "best.json"
LOCK_FILE = ".lock"
MAX_CHECKPOINTS = 3
# Model settings a run may change when it resumes: they create no variables.
_RESUMABLE_MODEL_CHANGES = ("compute_dtype",)


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
          f"--model_dir={self.path} is in use by another training run ({holder}); "
          f"wait for it to end, or pass another --model_dir.") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    lock.flush()
    self._lock = lock

  def checkpoints(self):
    """The run's checkpoints (in `path`: the chief's), newest first."""
    return checkpoints_newest_first(os.path.join(self.path, CHECKPOINT_DIR))

  def latest_checkpoint(self):
    """The run's latest checkpoint, or None."""
    return next(iter(self.checkpoints()), None)

  def write_config(self, model_config, train_config):
    if self.is_chief:
      write_run_config(self.path, model_config, train_config)

  def check_resumable(self, model_config, train_config):
    """A one-line ValueError if the run's config.json says its checkpoints hold
    another model than `model_config` (or EMA weights where there are none)."""
    if not tf.io.gfile.exists(os.path.join(self.path, CONFIG_FILE)):
      return
    saved_model, saved_train = read_run_config(self.path)
    differences = [
        f"{field.name}={getattr(saved_model, field.name)!r} (now "
        f"{getattr(model_config, field.name)!r})"
        for field in dataclasses.fields(model_config)
        if field.name not in _RESUMABLE_MODEL_CHANGES
        and getattr(saved_model, field.name) != getattr(model_config, field.name)]
    if saved_train.dataset != train_config.dataset:
      differences.append(f"dataset={saved_train.dataset!r} (now "
                         f"{train_config.dataset!r})")
    if bool(saved_train.ema_decay) != bool(train_config.ema_decay):
      differences.append(f"ema_decay={saved_train.ema_decay} (now "
                         f"{train_config.ema_decay}; EMA on or off changes what "
                         f"is checkpointed)")
    if differences:
      raise ValueError(
          f"--model_dir={self.path} holds a run with other settings: "
          f"{', '.join(differences)}. Resume it with its own settings, or pass a new "
          f"--model_dir.")

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
    raise ValueError(f"--model_dir={path} is a file, not a directory; pass a "
                     f"directory (it is created if missing).")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise ValueError(f"--model_dir={path} cannot be created or written "
                     f"({e.strerror}); pass a directory you can write to.") from None


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


def restore_newest(checkpoint, directory, partial=False):
  """Restores the newest checkpoint of `directory` that restores; returns its path, or
  None when there is none.

  A checkpoint that fails (a truncated or unreadable file after a full disk or a
  partial copy) is skipped with one warning line. If checkpoints exist and none
  restores, a one-line ValueError names the directory.
  """
  candidates = checkpoints_newest_first(directory)
  failures = []
  for path in candidates:
    try:
      status = checkpoint.restore(path)
      if partial:
        status.expect_partial()
      status.assert_existing_objects_matched()
    except Exception as e:  # pylint: disable=broad-except
      # Corrupt files fail in many ways (DataLossError, IndexError from the
      # reader, ...); whatever it is, this checkpoint cannot be used.
      reason = _first_line(e)
      failures.append(f"{os.path.basename(path)}: {reason}")
      logging.warning("Skipped checkpoint %s: it cannot be restored (%s).", path,
                      reason)
      continue
    return path
  if failures:
    raise ValueError(
        f"No checkpoint in {directory} can be restored ({'; '.join(failures)}); move "
        f"the directory aside or pass a new --model_dir.")
  return None


def _first_line(error):
  text = getattr(error, "message", None) or str(error)
  return text.strip().splitlines()[0][:200] if text.strip() else type(error).__name__


class BestCheckpoint:
  """The best validation figure of a run so far and the weights that gave it.

  `model_dir/best/` holds one checkpoint of the flow (the weights evaluated, EMA ones
  when EMA is on, with their batch-norm statistics) and `best.json` (its step and
  figure), so the best survives a resume. Lower is better (bits/dim).
  """

  def __init__(self, run_directory, flow):
    self.read_dir = os.path.join(run_directory.path, BEST_DIR)
    self.write_dir = os.path.join(run_directory.write_path, BEST_DIR)
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


def write_run_config(model_dir, model_config, train_config):
  """model_dir/config.json: what is needed to rebuild the model from checkpoints."""
  tf.io.gfile.makedirs(model_dir)
  with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE), "w") as f:
    json.dump({"model": dataclasses.asdict(model_config),
               "train": dataclasses.asdict(train_config)}, f, indent=2)


def read_run_config(model_dir):
  """The (RealNVPConfig, TrainConfig) that `write_run_config` wrote."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{model_dir} is not a training directory of train.py: "
                     f"{path} is missing.")
  with tf.io.gfile.GFile(path) as f:
    values = json.load(f)
  return RealNVPConfig(**values["model"]), TrainConfig(**values["train"])


def make_checkpoint(flow, step, optimizer=None, nonfinite_total=None, ema=None):
  """The checkpoint of a run: the flow (weights and batch-norm statistics), the step,
  and when training the optimizer, the skipped-step count and the EMA weights."""
  parts = dict(flow=flow, step=step)
  for name, value in [("optimizer", optimizer), ("nonfinite_total", nonfinite_total),
                      ("ema", ema)]:
    if value is not None:
      parts[name] = value
  return tf.train.Checkpoint(**parts)


def make_manager(checkpoint, run_directory):
  return tf.train.CheckpointManager(checkpoint, run_directory.checkpoint_dir,
                                    max_to_keep=MAX_CHECKPOINTS)


def restore_for_inference(model_dir, compute_dtype=None, weights=None):
  """The flow of a run directory, with the weights the run selects.

  `weights`: "best" (model_dir/best/: the weights of the best validation figure so
  far) or "last" (the latest checkpoint, with its EMA weights when it has them);
  default: the run's own `select`, falling back to "last" while no best is kept.
  Returns (flow, metadata, checkpoint path); metadata holds the dataset, the data
  settings, the step and the model config. `compute_dtype` overrides the precision
  of the s/t networks.
  """
  model_config, train_config = read_run_config(model_dir)
  if compute_dtype:
    model_config = dataclasses.replace(model_config, compute_dtype=compute_dtype)
  flow = flow_lib.build_realnvp(model_config)
  step = tf.Variable(0, dtype=tf.int64)
  best_dir = os.path.join(model_dir, BEST_DIR)
  if (weights or train_config.select) == "best" and tf.train.latest_checkpoint(best_dir):
    latest = restore_newest(tf.train.Checkpoint(flow=flow), best_dir, partial=True)
    with tf.io.gfile.GFile(os.path.join(best_dir, BEST_FILE)) as f:
      step.assign(json.load(f)["step"])
  else:
    variables = list(flow.trainable_variables)
    ema = ([tf.Variable(tf.zeros_like(v)) for v in variables]
           if train_config.ema_decay else None)
    checkpoint = make_checkpoint(flow, step, ema=ema)
    latest = restore_newest(checkpoint, os.path.join(model_dir, CHECKPOINT_DIR),
                            partial=True)
    for variable, average in zip(variables, ema or []):
      variable.assign(average)
  if latest is None:
    raise ValueError(f"--model_dir={model_dir} has no checkpoint in "
                     f"{CHECKPOINT_DIR}/.")
  metadata = {"dataset": train_config.dataset, "data": train_config.data_spec(),
              "step": int(step.numpy()), "model": dataclasses.asdict(model_config)}
  metadata.update(_finished_run_metadata(model_dir, metadata["step"]))
  return flow, metadata, latest


def _finished_run_metadata(model_dir, step):
  """What metrics.json adds for inference: the class counts and names of a
  class-conditional run, and the typicality reference when it belongs to the
  weights of `step` (a finished run's selected weights; not those of a run still
  training). Empty before the run has finished."""
  path = os.path.join(model_dir, METRICS_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    metrics = json.load(f)
  names = ["class_counts", "class_names"]
  if metrics.get("selected_step") == step:
    names.append("typicality_reference")
  return {name: metrics[name] for name in names if metrics.get(name) is not None}
