"""Training: the custom distributed loop, checkpoints, TensorBoard, export.

Everything `train.py` does lives here, so a notebook can train without the command line:

    trainer = training.Trainer(model_config, training.TrainConfig(dataset="digits"),
                               model_dir="/tmp/run")
    metrics = trainer.fit()

The loop is a `tf.function` step under a `tf.distribute` strategy (MirroredStrategy on
one host, MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster); the
per-replica loss is scaled by the global batch, gradients are summed over replicas,
clipped by their global norm and applied with Adam, as in the paper.
"""

import ctypes
import dataclasses
import json
import math
import os
import shutil
import signal
import tempfile
import time
from typing import NamedTuple, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from realnvp_tf import data
from realnvp_tf import evaluation
from realnvp_tf import export
from realnvp_tf import flow as flow_lib
from realnvp_tf.config import RealNVPConfig


# mallopt(3) parameter number of M_ARENA_MAX in glibc's malloc.h.
_M_ARENA_MAX = -8


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping settings (paper defaults).

  Attributes:
    dataset: one of `data.DATASET_NAMES`.
    batch_size: global batch size, split evenly over the replicas.
    train_steps: optimizer steps in all (a resumed run continues up to this).
    learning_rate: Adam's learning rate.
    warmup_steps: linear learning-rate warm-up from 0 (0: none).
    l2_coeff: L2 penalty on the weight-norm gains and tanh scales.
    clip_norm: gradients are clipped to this global norm.
    ema_decay: Polyak averaging of the weights (0: off); when on, the averages are
      used for evaluation and export.
    batch_norm_recalibration_batches: at the end of training, the batch norms'
      moving statistics are re-estimated on this many training batches for the final
      weights (see `Trainer.recalibrate_batch_norm`; 0: keep the moving averages).
    checkpoint_every: steps between checkpoints.
    eval_every: steps between evaluations on `eval_images` test images (0: only the
      final evaluation on the full test split).
    eval_images: test images of the periodic evaluations.
    eval_batch_size: batch size of evaluation.
    log_every: steps between TensorBoard scalars.
    max_nonfinite_steps: consecutive non-finite steps (skipped) before training stops.
    num_samples: samples in the TensorBoard image grid.
    seed: seed of data order, dequantization noise and sampling.
    data_dir, manual_dir: see `data.make_dataset`.
    export: write a SavedModel to `model_dir/export` at the end.
  """

  dataset: str = "mnist"
  batch_size: int = 64
  train_steps: int = 100_000
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  l2_coeff: float = 5e-5
  clip_norm: float = 100.0
  ema_decay: float = 0.0
  batch_norm_recalibration_batches: int = 50
  checkpoint_every: int = 1000
  eval_every: int = 5000
  eval_images: int = 2000
  eval_batch_size: int = 256
  log_every: int = 100
  max_nonfinite_steps: int = 10
  num_samples: int = 36
  seed: int = 0
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  export: bool = True

  def __post_init__(self):
    data.get_dataset_info(self.dataset)  # unknown names fail here, with the list
    for name in ("batch_size", "train_steps", "checkpoint_every", "eval_images",
                 "eval_batch_size", "log_every", "max_nonfinite_steps", "num_samples"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive; got {getattr(self, name)}.")
    for name in ("warmup_steps", "eval_every", "l2_coeff",
                 "batch_norm_recalibration_batches"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}.")
    if self.learning_rate <= 0 or self.clip_norm <= 0:
      raise ValueError("learning_rate and clip_norm must be positive.")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"ema_decay must be in [0, 1); got {self.ema_decay}.")


class Gradients(NamedTuple):
  """What `Trainer.compute_gradients` returns (all-reduced over the replicas)."""
  bits: tf.Tensor  # the global batch's mean bits/dim (no L2)
  gradients: list  # of bits/dim + L2, in the order of Trainer.variables
  grad_norm: tf.Tensor  # their global norm, before clipping
  clipped_gradients: list  # clipped to TrainConfig.clip_norm


class NonFiniteLossError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


def make_strategy():
  """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else MirroredStrategy.

  MirroredStrategy uses the local GPUs, or the CPU when there are none.
  """
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  return tf.distribute.MirroredStrategy(
      [d.name for d in gpus] if gpus else ["/cpu:0"])


def limit_malloc_arenas(count=1):
  """Caps glibc's malloc arenas for threads started from now on; False if not glibc.

  With one arena per TensorFlow thread (glibc's default), the memory that preparing the
  training step's graph frees (about 200 MB for the bench config) stays behind in
  arenas the activations are not allocated from; with one arena it is reused. Bench
  config, float32: peak RSS 1,626 -> 1,534 MB with no measurable change in step time
  (see README, Performance). Call it before the first TensorFlow op runs.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (AttributeError, OSError):
    return False
  return mallopt(_M_ARENA_MAX, int(count)) == 1


def check_batch_size(batch_size, strategy):
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by the {replicas} replicas; use a "
        f"multiple of {replicas}.")


class _WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up to a constant learning rate."""

  def __init__(self, learning_rate, warmup_steps):
    self.learning_rate = learning_rate
    self.warmup_steps = warmup_steps

  def __call__(self, step):
    if not self.warmup_steps:
      return tf.constant(self.learning_rate, tf.float32)
    ramp = tf.cast(step + 1, tf.float32) / float(self.warmup_steps)
    return self.learning_rate * tf.minimum(1.0, ramp)

  def get_config(self):
    return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


class Trainer:
  """Owns the model, optimizer, EMA, checkpoints and logs of one training run."""

  def __init__(self, model_config: RealNVPConfig, train_config: TrainConfig,
               model_dir: str, strategy=None):
    info = data.get_dataset_info(train_config.dataset)
    if tuple(model_config.image_shape) != tuple(info.image_shape) or (
        model_config.num_levels != info.num_levels):
      raise ValueError(
          f"Dataset {info.name} has images of shape {info.image_shape} with "
          f"{info.num_levels} levels, but the model config says "
          f"{model_config.image_shape} with {model_config.num_levels}.")
    self.model_config = model_config
    self.config = train_config
    self.info = info
    self.strategy = strategy or make_strategy()
    check_batch_size(train_config.batch_size, self.strategy)
    self.model_dir = model_dir
    self._is_chief = _is_chief(self.strategy)
    self._write_dir = model_dir if self._is_chief else tempfile.mkdtemp(
        prefix="realnvp_worker_")

    with self.strategy.scope():
      self.flow = flow_lib.build_realnvp(model_config)
      self.variables = list(self.flow.trainable_variables)
      self._statistics = list(self.flow.non_trainable_variables)
      self._l2_variables = flow_lib.weight_scale_variables(self.flow)
      self.optimizer = keras.optimizers.Adam(
          _WarmupSchedule(train_config.learning_rate, train_config.warmup_steps))
      self.optimizer.build(self.variables)
      # The optimizer's slot variables, in the order of self.variables.
      index = self.optimizer._get_variable_index  # pylint: disable=protected-access
      self._adam_m = [self.optimizer._momentums[index(v)].value  # pylint: disable=protected-access
                      for v in self.variables]
      self._adam_v = [self.optimizer._velocities[index(v)].value  # pylint: disable=protected-access
                      for v in self.variables]
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.nonfinite_streak = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="nonfinite_streak")
      self.nonfinite_total = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="nonfinite_total")
      self.ema = None
      if train_config.ema_decay:
        self.ema = [tf.Variable(v, trainable=False, name=v.name.split(":")[0] + "_ema")
                    for v in self.variables]

    checkpointed = dict(flow=self.flow, optimizer=self.optimizer, step=self.step,
                        nonfinite_total=self.nonfinite_total)
    if self.ema is not None:
      checkpointed["ema"] = self.ema
    self.checkpoint = tf.train.Checkpoint(**checkpointed)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(self._write_dir, "checkpoints"), max_to_keep=3)
    self._compiled_step = tf.function(self._distributed_step)
    self._stop_signal = None

  # -- the step -----------------------------------------------------------------------

  def compute_gradients(self, images):
    """The gradients of this replica's share of the loss, summed over the replicas.

    Runs in replica context (inside `strategy.run`), training mode: the batch norms
    normalise with the global batch's statistics and update their moving averages.
    The loss is the global batch's mean bits/dim plus the L2 penalty; each replica
    takes its share of it (divided by the global batch size and by the replica count
    for L2), so the gradients summed over the replicas are the gradient of the global
    batch's loss, as on one device. Returns a `Gradients` tuple.
    """
    context = tf.distribute.get_replica_context()
    per_dim = 1.0 / (self.model_config.num_dims * math.log(2.0))
    with tf.GradientTape() as tape:
      log_prob = self.flow.log_prob(images, bijector_kwargs={"training": True})
      bits = -tf.reduce_sum(log_prob) * per_dim / self.config.batch_size
      l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_variables])
      loss = bits + self.config.l2_coeff * l2 / context.num_replicas_in_sync
    gradients = tape.gradient(loss, self.variables)
    # Summed here, not by the optimizer, so that clipping sees the global gradient.
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    bits = context.all_reduce(tf.distribute.ReduceOp.SUM, bits)
    clipped, grad_norm = tf.clip_by_global_norm(gradients, self.config.clip_norm)
    return Gradients(bits, gradients, grad_norm, clipped)

  def _replica_step(self, images):
    # The training-mode pass updates the batch-norm moving averages; a skipped step
    # puts them back.
    statistics = [tf.identity(v) for v in self._statistics]
    out = self.compute_gradients(images)
    finite = tf.logical_and(tf.math.is_finite(out.grad_norm),
                            tf.math.is_finite(out.bits))
    tf.distribute.get_replica_context().merge_call(
        self._apply_if_finite, args=(out.clipped_gradients, statistics, finite))
    return out.bits, out.grad_norm, finite

  def _apply_if_finite(self, strategy, gradients, statistics, finite):
    # Runs in cross-replica context, where a tf.cond may hold the updates (in replica
    # context it may not hold a synchronisation point). The gradients are already
    # summed over replicas, so Keras's own all-reduce is bypassed.
    finite = strategy.experimental_local_results(finite)[0]

    def apply():
      # What Keras's optimizer does after its own all-reduce: one Adam update per
      # variable, on each replica's copy.
      optimizer = self.optimizer
      learning_rate = optimizer.learning_rate
      step = tf.cast(optimizer.iterations + 1, tf.float32)
      beta_1_power = tf.pow(tf.cast(optimizer.beta_1, tf.float32), step)
      beta_2_power = tf.pow(tf.cast(optimizer.beta_2, tf.float32), step)

      def fused_adam(var, grad, m, v):
        # Keras's Adam update in TF's one-op kernel (the same formula, with epsilon
        # added to sqrt(v)): one op per variable instead of Keras's ~8.
        return tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=tf.cast(learning_rate, tf.float32),
            beta1=optimizer.beta_1, beta2=optimizer.beta_2, epsilon=optimizer.epsilon,
            grad=grad)

      for gradient, variable, m, v in zip(gradients, self.variables, self._adam_m,
                                          self._adam_v):
        strategy.extended.update(variable, fused_adam, args=(gradient, m, v),
                                 group=False)
      optimizer.iterations.assign_add(1)
      if self.ema is not None:
        decay = self.config.ema_decay
        for average, variable in zip(self.ema, self.variables):
          average.assign(decay * average + (1.0 - decay) * variable)
      self.nonfinite_streak.assign(0)
      return tf.constant(True)

    def skip():
      for variable, value in zip(self._statistics, statistics):
        strategy.extended.update(variable, lambda var, val: var.assign(val),
                                 args=(value,), group=False)
      self.nonfinite_streak.assign_add(1)
      self.nonfinite_total.assign_add(1)
      return tf.constant(False)

    tf.cond(finite, apply, skip)
    self.step.assign_add(1)

  def train_step(self, iterator):
    """One optimizer step on the next batch of `iterator` (a distributed iterator).

    Returns (bits/dim of the batch, gradient global norm, whether the update was
    applied); a non-finite step is skipped. Runs as one `tf.function`.
    """
    return self._compiled_step(iterator)

  def _distributed_step(self, iterator):
    bits, grad_norm, finite = self.strategy.run(self._replica_step, args=(next(iterator),))
    local = self.strategy.experimental_local_results
    return local(bits)[0], local(grad_norm)[0], local(finite)[0]

  # -- the loop -----------------------------------------------------------------------

  def restore(self):
    """Restores the latest checkpoint of model_dir, if any; returns its step."""
    latest = tf.train.latest_checkpoint(os.path.join(self.model_dir, "checkpoints"))
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("Resumed from %s at step %d.", latest, int(self.step.numpy()))
    return int(self.step.numpy())

  def train_dataset(self, start_step):
    """The training stream from `start_step` on.

    The data position is kept by epoch: a run that resumes at step s starts epoch
    s // steps_per_epoch afresh, with that epoch's own shuffle and noise seed.
    """
    return data.make_distributed_dataset(
        self.strategy, self.config.dataset, "train",
        global_batch_size=self.config.batch_size, training=True,
        data_dir=self.config.data_dir, manual_dir=self.config.manual_dir,
        seed=self.data_seed(start_step))

  def data_seed(self, step):
    """The seed of the training stream of the epoch that `step` falls in."""
    steps_per_epoch = max(1, self.info.num_train // self.config.batch_size)
    return self.config.seed * 1_000_003 + step // steps_per_epoch

  def eval_dataset(self, max_images=None):
    ds = data.make_dataset(
        self.config.dataset, "test", batch_size=self.config.eval_batch_size,
        training=False, data_dir=self.config.data_dir,
        manual_dir=self.config.manual_dir, seed=self.config.seed)
    if max_images:
      ds = ds.unbatch().take(max_images).batch(self.config.eval_batch_size)
    return ds

  def fit(self, progress=True):
    """Trains up to `train_steps`, then evaluates on the full test split and exports.

    Returns the final metrics (also written to `model_dir/metrics.json`).
    """
    cfg = self.config
    start = self.restore()
    if self._is_chief:
      write_run_config(self.model_dir, self.model_config, cfg)
    writer = tf.summary.create_file_writer(os.path.join(self._write_dir, "train"))
    eval_writer = tf.summary.create_file_writer(os.path.join(self._write_dir, "test"))
    bar = keras.utils.Progbar(cfg.train_steps, stateful_metrics=[
        "bits/dim", "images/s"], verbose=1 if (progress and self._is_chief) else 0)
    bar.update(start)
    previous_handlers = self._install_signal_handlers()
    last_bits = float("nan")
    try:
      iterator = iter(self.train_dataset(start))
      tick, tick_step = time.perf_counter(), start
      step = start
      while step < cfg.train_steps:
        bits, grad_norm, finite = self.train_step(iterator)
        step = int(self.step.numpy())
        if bool(finite):
          last_bits = float(bits)
        elif int(self.nonfinite_streak.numpy()) >= cfg.max_nonfinite_steps:
          raise NonFiniteLossError(
              f"{int(self.nonfinite_streak.numpy())} consecutive steps had a non-finite loss "
              f"or gradient (last at step {step}); stopped. The last checkpoint in "
              f"{self.manager.directory} holds the last good weights. Lower "
              f"--learning_rate or add --warmup_steps.")
        else:
          logging.warning("Step %d: non-finite loss or gradient; update skipped.", step)
        if step % cfg.log_every == 0 or step == cfg.train_steps:
          now = time.perf_counter()
          images_per_s = (step - tick_step) * cfg.batch_size / max(now - tick, 1e-9)
          tick, tick_step = now, step
          with writer.as_default(step=step):
            tf.summary.scalar("bits_per_dim", bits)
            tf.summary.scalar("grad_norm", grad_norm)
            tf.summary.scalar("learning_rate",
                              self.optimizer.learning_rate)
            tf.summary.scalar("images_per_second", images_per_s)
            tf.summary.scalar("nonfinite_steps", self.nonfinite_total)
          bar.update(step, [("bits/dim", last_bits), ("images/s", images_per_s)])
        if step % cfg.checkpoint_every == 0:
          self.manager.save(checkpoint_number=step)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.train_steps:
          self._evaluate_and_log(eval_writer, step, cfg.eval_images)
        if self._stop_signal is not None:
          self.manager.save(checkpoint_number=step)
          logging.warning("Signal %d: checkpoint saved at step %d; stopping.",
                          self._stop_signal, step)
          return None
      with self.averaged_weights():
        recalibrated = self.recalibrate_batch_norm(cfg.batch_norm_recalibration_batches)
      if recalibrated or self.manager.latest_checkpoint != os.path.join(
          self.manager.directory, f"ckpt-{step}"):
        self.manager.save(checkpoint_number=step)
      result = self._evaluate_and_log(eval_writer, step, None)
      result.update(step=step, train_bits_per_dim=last_bits,
                    nonfinite_steps=int(self.nonfinite_total.numpy()),
                    dataset=cfg.dataset, model_config=dataclasses.asdict(self.model_config))
      if self._is_chief:
        with tf.io.gfile.GFile(os.path.join(self.model_dir, "metrics.json"), "w") as f:
          json.dump(result, f, indent=2)
      if cfg.export:
        with self.averaged_weights():
          export.export_saved_model(self.flow, os.path.join(self._write_dir, "export"),
                                    metadata={"dataset": cfg.dataset, "step": step})
      return result
    finally:
      _restore_signal_handlers(previous_handlers)
      writer.close()
      eval_writer.close()
      if not self._is_chief:
        shutil.rmtree(self._write_dir, ignore_errors=True)

  def recalibrate_batch_norm(self, num_batches):
    """Re-estimates every batch norm's moving statistics for the current weights.

    Moving averages trail the weights by about 1 / (1 - momentum) steps. While the
    learning rate is still high, the weights of those steps differ enough that the
    inference-mode figure can be far from the training batches' (a 20-minute run of
    the bench config: 1.47 against 1.36 bits/dim on training images). This runs
    `num_batches` training batches through the flow in training mode, without
    touching the weights or the optimizer, and sets each moving mean and variance to
    the mean of those batches' statistics ("precise batch norm", Wu & Johnson 2021).
    Call it inside `averaged_weights()` when EMA is on, so that the statistics are
    those of the weights that are evaluated. Returns the number of batches used:
    batches with non-finite statistics are left out, and if none is left the moving
    averages are kept.
    """
    norms = self.flow.bijector.batch_norms
    if num_batches <= 0 or not norms:
      return 0
    moving_averages = [v.numpy() for v in self._statistics]
    saved = [norm.momentum for norm in norms]
    # Momentum 0 while the pass is traced: each pass leaves its batch's statistics
    # in the moving averages, which are read and summed here.
    for norm in norms:
      norm.momentum = 0.0
    try:
      statistics_pass = lambda batch: self.flow.log_prob(
          batch, bijector_kwargs={"training": True})
      step = tf.function(lambda it: self.strategy.run(statistics_pass, args=(next(it),)))
      iterator = iter(self.train_dataset(int(self.step.numpy())))
      sums = [np.zeros(v.shape, np.float64) for v in self._statistics]
      used = 0
      for _ in range(num_batches):
        try:
          step(iterator)
        except tf.errors.OutOfRangeError:  # a finite dataset ran out: use what came
          break
        values = [v.numpy() for v in self._statistics]
        # A pass with non-finite statistics is left out rather than averaged in (and
        # not left in the variables, where the next momentum-0 update would keep it).
        if all(np.all(np.isfinite(value)) for value in values):
          sums = [total + value for total, value in zip(sums, values)]
          used += 1
        else:
          for variable, value in zip(self._statistics, moving_averages):
            variable.assign(value)
    finally:
      for norm, momentum in zip(norms, saved):
        norm.momentum = momentum
    estimates = [total / used for total in sums] if used else moving_averages
    for variable, value in zip(self._statistics, estimates):
      variable.assign(value)
    if used:
      logging.info("Batch-norm statistics re-estimated on %d training batches.", used)
    else:
      logging.warning("No training batch gave finite batch-norm statistics; the "
                      "moving averages are kept.")
    return used

  def _evaluate_and_log(self, writer, step, max_images):
    with self.averaged_weights():
      result = evaluation.evaluate_bits_per_dim(
          self.flow.log_prob, self.eval_dataset(max_images), self.info.image_shape)
      samples = self.flow.sample(self.config.num_samples, seed=[self.config.seed, step])
    grid = evaluation.image_grid(flow_lib.to_images(samples, self.info.num_levels),
                                 self.info.num_levels)
    with writer.as_default(step=step):
      tf.summary.scalar("bits_per_dim", result["bits_per_dim"])
      tf.summary.image("samples", grid[None])
    logging.info("Step %d: test bits/dim %.4f +- %.4f on %d images.", step,
                 result["bits_per_dim"], result["bits_per_dim_stderr"],
                 result["num_images"])
    return {k: v for k, v in result.items() if k != "per_image"}

  def averaged_weights(self):
    """Context manager: the EMA weights in place of the raw ones (if EMA is on)."""
    return _SwappedWeights(self.variables, self.ema)

  def _install_signal_handlers(self):
    def handler(signum, frame):
      del frame
      self._stop_signal = signum

    previous = {}
    try:
      for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
      pass
    return previous


def write_run_config(model_dir, model_config, train_config):
  """model_dir/config.json: what eval.py needs to rebuild the model from checkpoints."""
  tf.io.gfile.makedirs(model_dir)
  with tf.io.gfile.GFile(os.path.join(model_dir, "config.json"), "w") as f:
    json.dump({"model": dataclasses.asdict(model_config),
               "train": dataclasses.asdict(train_config)}, f, indent=2)


def read_run_config(model_dir):
  """The (RealNVPConfig, TrainConfig) that `write_run_config` wrote."""
  path = os.path.join(model_dir, "config.json")
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{model_dir} is not a training directory of train.py: "
                     f"{path} is missing.")
  with tf.io.gfile.GFile(path) as f:
    values = json.load(f)
  return RealNVPConfig(**values["model"]), TrainConfig(**values["train"])


class _SwappedWeights:

  def __init__(self, variables, averages):
    self._variables, self._averages = variables, averages
    self._saved = None

  def __enter__(self):
    if self._averages is not None:
      self._saved = [v.numpy() for v in self._variables]
      for variable, average in zip(self._variables, self._averages):
        variable.assign(average)

  def __exit__(self, *exc):
    if self._saved is not None:
      for variable, value in zip(self._variables, self._saved):
        variable.assign(value)
    return False


def _restore_signal_handlers(previous):
  for signum, handler in previous.items():
    signal.signal(signum, handler)


def _is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type is None or task_type == "chief" or (
      task_type == "worker" and task_id == 0)
