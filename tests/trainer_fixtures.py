"""Small trainers and distributed-step helpers shared by the training tests."""

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

import realnvp_tf
from realnvp_tf import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "smoke.cfg")
IMAGE_SHAPE = (8, 8, 1)


def env(**extra):
  """The environment of a subprocess: quiet TensorFlow, the repository importable."""
  values = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  values.pop("TF_CONFIG", None)
  values.update(extra)
  return values


def shared_directory(tmp_path_factory, name, make):
  """A directory `make(path)` fills once for the whole test run, shared by the xdist
  workers: the first to take the lock makes it, the others wait and reuse it. Only a
  finished `make` marks it done, so after a failure the next user makes it again from
  an empty directory (a half-written run directory would be resumed) and fails on its
  own. The users must only read it."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' common parent
    base = base.parent
  path, done = base / name, base / f"{name}.done"
  with open(base / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not done.exists():
      shutil.rmtree(path, ignore_errors=True)
      path.mkdir()
      make(path)
      done.touch()
  return path


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_workers(tmp_path, command_of_index, count=2):
  """Starts `count` MultiWorkerMirroredStrategy workers on loopback ports (TF_CONFIG
  of one local cluster), worker i running `command_of_index(i)`. Their stdout and
  stderr go to tmp_path/worker_i.log: a full pipe would block one worker, and so all.
  Returns (processes, log files open for reading back)."""
  cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(count)]}
  processes, logs = [], []
  for index in range(count):
    tf_config = json.dumps({"cluster": cluster,
                            "task": {"type": "worker", "index": index}})
    logs.append(open(tmp_path / f"worker_{index}.log", "w+"))
    processes.append(subprocess.Popen(
        command_of_index(index), env=env(TF_CONFIG=tf_config), stdout=logs[-1],
        stderr=subprocess.STDOUT))
  return processes, logs


def train_cmd(model_dir, *flags):
  return [sys.executable, os.path.join(REPO, "train.py"), f"--flagfile={SMOKE}",
          f"--model_dir={model_dir}", *flags]


def flagfile_values(path):
  """{name: value} of the --name=value lines of a flagfile."""
  values = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line.startswith("--") and "=" in line:
        name, value = line[2:].split("=", 1)
        values[name] = value
  return values


def model_config(use_batch_norm=True):
  """The smoke settings' model (one scale: four checkerboard couplings, half the
  trace of two scales; the multi-scale path has tests of its own in test_flow.py)."""
  return realnvp_tf.RealNVPConfig(image_shape=IMAGE_SHAPE, num_levels=17, num_scales=1,
                                  num_res_blocks=1, num_filters=4,
                                  use_batch_norm=use_batch_norm)


def train_config(**kwargs):
  defaults = dict(dataset="digits", batch_size=16, train_steps=6, checkpoint_every=3,
                  eval_every=0, eval_images=32, log_every=1, export=False)
  return training.TrainConfig(**dict(defaults, **kwargs))


_STRATEGIES = {}


def strategy(num_devices):
  """One MirroredStrategy per device set for the whole process: the collective
  instance keys of several strategies on the same devices collide."""
  if num_devices not in _STRATEGIES:
    _STRATEGIES[num_devices] = tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(num_devices)])
  return _STRATEGIES[num_devices]


def images(seed, count=16, low=0.0, high=17.0):
  return tf.random.stateless_uniform((count,) + IMAGE_SHAPE, [seed, 0], low, high)


def uneven_images(seed):
  """16 images whose two halves have different statistics, so that each replica's
  local batch statistics differ from the global batch's."""
  values = images(seed)
  return tf.concat([values[:8] * 0.4, values[8:] * 0.6 + 6.0], 0)


def copy_state(source, target):
  for s, t in zip(source.state.flow.variables, target.state.flow.variables,
                  strict=True):
    t.assign(s.numpy())


def distribute(trainer, batch):
  dataset = trainer.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch))
  return next(iter(dataset))


def one_step(trainer, batch):
  """One step of `trainer` on the global batch `batch`: (bits, grad_norm, finite)."""
  dataset = trainer.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch))
  out = trainer.step_fn(iter(dataset))
  return out.bits[0], out.grad_norm[0], out.finite[0]


def replica_values(trainer, value):
  """The local values of a (possibly mirrored) variable or tensor, as numpy arrays."""
  if isinstance(value, keras.Variable):  # the tf.Variable behind it is the mirrored one
    value = value.value
  return [np.asarray(v) for v in trainer.strategy.experimental_local_results(value)]


def gradients(trainer, batch):
  """`trainer`'s gradient computation on the global batch `batch` (training mode, so
  it updates the moving statistics as a step would).

  Returns dict(bits, gradients, grad_norm, clipped) as the first replica sees them
  (all-reduced, so every replica holds the same values).
  """
  compute = tf.function(lambda b: trainer.strategy.run(
      trainer.step_fn.compute_gradients, args=(b,)))
  out = compute(distribute(trainer, batch))

  def first(value):
    return replica_values(trainer, value)[0]

  return dict(bits=first(out.bits), grad_norm=first(out.grad_norm),
              gradients=[first(g) for g in out.gradients],
              clipped=[first(g) for g in out.clipped_gradients])


def local_batch(trainer, distributed_batch):
  return tf.concat(trainer.strategy.experimental_local_results(distributed_batch), 0)


def first_batch(trainer):
  return local_batch(trainer, next(iter(trainer.train_dataset(
      int(trainer.state.step.numpy())))))
