"""A training run's directory: its files, the one checkpoint layout, and restoring it.

    model_dir/
      config.json    the run's RealNVPConfig and TrainConfig
      checkpoints/   the latest checkpoints (ckpt-STEP), tf.train.CheckpointManager's
      metrics.json   the final figures
      train/, test/  TensorBoard logs
      export/        the SavedModel

Training, evaluation from checkpoints and `realnvp_tf.load` all go through this module,
so the layout is written down once.
"""

import dataclasses
import json
import os
import shutil
import tempfile

import tensorflow as tf

from realnvp_tf import flow as flow_lib
from realnvp_tf.config import RealNVPConfig
from realnvp_tf.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
MAX_CHECKPOINTS = 3


class RunDirectory:
  """The paths of one run. A worker that is not the chief writes to a temporary
  directory of its own (removed by `close`), never to `path`."""

  def __init__(self, path, is_chief=True):
    self.path = os.fspath(path)
    self.is_chief = is_chief
    self.write_path = (self.path if is_chief else
                       tempfile.mkdtemp(prefix="realnvp_worker_"))

  @property
  def checkpoint_dir(self):
    """Where this worker writes checkpoints."""
    return os.path.join(self.write_path, CHECKPOINT_DIR)

  @property
  def export_dir(self):
    return os.path.join(self.write_path, EXPORT_DIR)

  def log_dir(self, name):
    return os.path.join(self.write_path, name)

  def latest_checkpoint(self):
    """The run's latest checkpoint (read from `path`: the chief's), or None."""
    return tf.train.latest_checkpoint(os.path.join(self.path, CHECKPOINT_DIR))

  def write_config(self, model_config, train_config):
    if self.is_chief:
      write_run_config(self.path, model_config, train_config)

  def write_metrics(self, metrics):
    if self.is_chief:
      with tf.io.gfile.GFile(os.path.join(self.path, METRICS_FILE), "w") as f:
        json.dump(metrics, f, indent=2)

  def close(self):
    if not self.is_chief:
      shutil.rmtree(self.write_path, ignore_errors=True)


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


def restore_for_inference(model_dir, compute_dtype=None):
  """The flow of a run's latest checkpoint, with the EMA weights when it has them.

  Returns (flow, metadata, checkpoint path); metadata holds the dataset, the step and
  the model config. `compute_dtype` overrides the precision of the s/t networks.
  """
  model_config, train_config = read_run_config(model_dir)
  if compute_dtype:
    model_config = dataclasses.replace(model_config, compute_dtype=compute_dtype)
  latest = RunDirectory(model_dir).latest_checkpoint()
  if latest is None:
    raise ValueError(f"--model_dir={model_dir} has no checkpoint in "
                     f"{CHECKPOINT_DIR}/.")
  flow = flow_lib.build_realnvp(model_config)
  variables = list(flow.trainable_variables)
  step = tf.Variable(0, dtype=tf.int64)
  ema = ([tf.Variable(tf.zeros_like(v)) for v in variables]
         if train_config.ema_decay else None)
  checkpoint = make_checkpoint(flow, step, ema=ema)
  checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()
  for variable, average in zip(variables, ema or []):
    variable.assign(average)
  metadata = {"dataset": train_config.dataset, "step": int(step.numpy()),
              "model": dataclasses.asdict(model_config)}
  return flow, metadata, latest
