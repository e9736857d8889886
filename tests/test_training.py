"""Training: distribution, checkpoints and resume, non-finite steps, logs, flags."""

import dataclasses
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "smoke.cfg")


def _env(**extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, **extra)
  env.pop("TF_CONFIG", None)
  return env if "TF_CONFIG" not in extra else dict(env, TF_CONFIG=extra["TF_CONFIG"])


def _train_cmd(model_dir, *flags):
  return [sys.executable, os.path.join(REPO, "train.py"), f"--flagfile={SMOKE}",
          f"--model_dir={model_dir}", *flags]


def _model_config(use_batch_norm=True):
  return realnvp_tf.RealNVPConfig(image_shape=(8, 8, 1), num_levels=17, num_scales=2,
                                  num_res_blocks=1, num_filters=4,
                                  use_batch_norm=use_batch_norm)


def _train_config(**kwargs):
  defaults = dict(dataset="digits", batch_size=16, train_steps=6, checkpoint_every=3,
                  eval_every=0, eval_images=32, log_every=1, export=False)
  return training.TrainConfig(**dict(defaults, **kwargs))


_STRATEGIES = {}


def _strategy(num_devices):
  # One strategy per device set for the whole process: collective instance keys of
  # several MirroredStrategy objects on the same devices collide.
  if num_devices not in _STRATEGIES:
    _STRATEGIES[num_devices] = tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(num_devices)])
  return _STRATEGIES[num_devices]


def _copy_state(source, target):
  for s, t in zip(source.flow.variables, target.flow.variables):
    t.assign(s.numpy())


def _one_step(trainer, images):
  dataset = trainer.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(images))
  return trainer.train_step(iter(dataset))


def test_two_replicas_match_one_device_without_batch_norm(tmp_path):
  images = tf.random.stateless_uniform([16, 8, 8, 1], [1, 2], 0.0, 17.0)
  one = training.Trainer(_model_config(False), _train_config(), str(tmp_path / "a"),
                         strategy=_strategy(1))
  two = training.Trainer(_model_config(False), _train_config(), str(tmp_path / "b"),
                         strategy=_strategy(2))
  assert two.strategy.num_replicas_in_sync == 2
  _copy_state(one, two)
  bits_one, norm_one, _ = _one_step(one, images)
  bits_two, norm_two, _ = _one_step(two, images)
  np.testing.assert_allclose(bits_two, bits_one, rtol=1e-5)
  np.testing.assert_allclose(norm_two, norm_one, rtol=1e-4)
  moved = 0
  for a, b in zip(one.flow.trainable_variables, two.flow.trainable_variables):
    for replica_value in two.strategy.experimental_local_results(b):
      np.testing.assert_allclose(replica_value.numpy(), a.numpy(), atol=1e-5)
    moved += not np.allclose(a.numpy(), 0.0)
  assert moved > 0


def test_two_replicas_keep_flow_moving_statistics_identical(tmp_path):
  two = training.Trainer(_model_config(True), _train_config(), str(tmp_path),
                         strategy=_strategy(2))
  moving = [v for v in two.flow.variables if "moving" in v.name]
  assert moving
  before = [v.numpy() for v in moving]
  for step in range(3):
    # Different images on the two replicas: identical statistics come from syncing.
    images = tf.random.stateless_uniform([16, 8, 8, 1], [3, step], 0.0, 17.0)
    images = tf.concat([images[:8] * 0.5, images[8:]], 0)
    _one_step(two, images)
  for variable, old in zip(moving, before):
    first, second = [v.numpy() for v in two.strategy.experimental_local_results(variable)]
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, old)


def test_batch_size_must_divide_over_replicas(tmp_path):
  with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
    training.Trainer(_model_config(), _train_config(batch_size=15), str(tmp_path),
                     strategy=_strategy(2))


def test_train_config_and_dataset_checks(tmp_path):
  with pytest.raises(ValueError, match="Unknown dataset"):
    _train_config(dataset="imagenet128")
  with pytest.raises(ValueError, match="shape"):
    training.Trainer(_model_config(), _train_config(dataset="mnist"), str(tmp_path),
                     strategy=_strategy(1))


class _PoisonedTrainer(training.Trainer):
  """Feeds NaN images at the given (0-based) positions of the stream.

  The stream runs 10 batches past `train_steps`, for the batch-norm re-estimation.
  """

  poisoned_steps = ()

  def train_dataset(self, start_step):
    good = tf.random.stateless_uniform([16, 8, 8, 1], [5, 6], 0.0, 17.0)
    poisoned = set(self.poisoned_steps)
    batches = [tf.fill(good.shape, np.nan) if s in poisoned else good
               for s in range(start_step, self.config.train_steps + 10)]
    return self.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(tf.stack(batches)))


def test_poisoned_batch_is_skipped(tmp_path):
  trainer = _PoisonedTrainer(_model_config(), _train_config(train_steps=5),
                             str(tmp_path), strategy=_strategy(1))
  trainer.poisoned_steps = (2,)
  metrics = trainer.fit(progress=False)
  assert metrics["nonfinite_steps"] == 1
  assert metrics["step"] == 5
  assert np.isfinite(metrics["bits_per_dim"])
  assert int(trainer.optimizer.iterations.numpy()) == 4  # one update skipped
  assert all(np.all(np.isfinite(v.numpy())) for v in trainer.flow.variables)


def test_consecutive_nonfinite_steps_stop_with_checkpoint_intact(tmp_path):
  trainer = _PoisonedTrainer(
      _model_config(), _train_config(train_steps=20, checkpoint_every=2,
                                     max_nonfinite_steps=3), str(tmp_path),
      strategy=_strategy(1))
  trainer.poisoned_steps = tuple(range(4, 20))
  with pytest.raises(training.NonFiniteLossError, match="3 consecutive steps"):
    trainer.fit(progress=False)
  restored = training.Trainer(_model_config(), _train_config(), str(tmp_path),
                              strategy=_strategy(1))
  assert restored.restore() in (4, 6)
  assert all(np.all(np.isfinite(v.numpy())) for v in restored.flow.variables)
  lp = restored.flow.log_prob(tf.random.stateless_uniform([4, 8, 8, 1], [7, 8], 0, 17))
  assert np.all(np.isfinite(lp))


def _scalars(event_dir):
  values = {}
  for path in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values.setdefault(value.tag, []).append((event.step, value))
  return values


def test_train_py_smoke_run_writes_everything(tmp_path):
  model_dir = tmp_path / "run"
  result = subprocess.run(_train_cmd(model_dir), env=_env(), capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "test bits/dim:" in result.stdout
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["num_images"] == 297 and metrics["step"] == 6
  assert 0 < metrics["bits_per_dim"] < 10
  assert os.path.exists(model_dir / "export" / "saved_model.pb")
  assert sorted(os.listdir(model_dir / "checkpoints")) == [
      "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index",
      "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
  train = _scalars(str(model_dir / "train"))
  for tag in ("bits_per_dim", "grad_norm", "learning_rate", "images_per_second"):
    assert [step for step, _ in train[tag]] == [1, 2, 3, 4, 5, 6], tag
  test = _scalars(str(model_dir / "test"))
  assert [step for step, _ in test["bits_per_dim"]] == [3, 6]
  image_steps = [step for step, _ in test["samples"]]
  assert image_steps == [3, 6]
  encoded = tf.io.decode_png(test["samples"][0][1].tensor.string_val[2])
  assert encoded.shape[0] > 8 and encoded.shape[2] == 1


def _wait_for(path_pattern, process, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    found = glob.glob(path_pattern)
    if found:
      return found
    if process.poll() is not None:
      raise AssertionError(f"process ended early: {process.communicate()}")
    time.sleep(0.2)
  raise AssertionError(f"timed out waiting for {path_pattern}")


def _checkpoint_step(model_dir):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      os.path.join(model_dir, "checkpoints")))
  return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_sigkill_then_resume_continues_from_checkpoint(tmp_path):
  model_dir = str(tmp_path / "run")
  flags = ["--train_steps=40", "--checkpoint_every=10", "--eval_every=0",
           "--learning_rate=0.005", "--num_filters=16", "--export=false"]
  process = subprocess.Popen(_train_cmd(model_dir, *flags), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for(os.path.join(model_dir, "checkpoints", "ckpt-10.index"), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  first = _scalars(os.path.join(model_dir, "train"))["bits_per_dim"]
  first = {step: tf.make_ndarray(v.tensor) for step, v in first}
  killed_at = _checkpoint_step(model_dir)
  assert killed_at >= 10
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      os.path.join(model_dir, "checkpoints")))
  slots = [k for k in reader.get_variable_to_shape_map() if "optimizer" in k]
  assert len(slots) > 10, "optimizer state is not checkpointed"
  iterations = [k for k in slots if "iteration" in k]
  assert [int(reader.get_tensor(k)) for k in iterations] == [killed_at]

  result = subprocess.run(_train_cmd(model_dir, *flags), env=_env(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"at step {killed_at}" in result.stderr
  second = {step: tf.make_ndarray(v.tensor) for step, v in
            _scalars(os.path.join(model_dir, "train"))["bits_per_dim"]
            if step > killed_at}
  assert min(second) == killed_at + 1 and max(second) == 40
  # The loss goes on from where it was, well below where training started.
  assert first[killed_at] < first[1] - 0.3
  assert abs(second[killed_at + 1] - first[killed_at]) < abs(
      second[killed_at + 1] - first[1])
  assert _checkpoint_step(model_dir) == 40
  metrics = json.loads(open(os.path.join(model_dir, "metrics.json")).read())
  assert metrics["step"] == 40


def test_sigterm_saves_current_step_and_exits_cleanly(tmp_path):
  model_dir = str(tmp_path / "run")
  log = open(tmp_path / "train.log", "w+")  # a file: a full pipe would block training
  process = subprocess.Popen(
      _train_cmd(model_dir, "--train_steps=100000", "--checkpoint_every=5",
                 "--eval_every=0"),
      env=_env(), stdout=subprocess.DEVNULL, stderr=log)
  _wait_for(os.path.join(model_dir, "checkpoints", "ckpt-5.index"), process)
  time.sleep(1.0)
  process.send_signal(signal.SIGTERM)
  process.wait(timeout=120)
  log.seek(0)
  stderr = log.read()
  assert process.returncode == 0, stderr[-3000:]
  step = _checkpoint_step(model_dir)
  assert f"checkpoint saved at step {step}" in stderr
  assert os.path.exists(os.path.join(model_dir, "checkpoints", f"ckpt-{step}.index"))
  assert step > 5


@pytest.mark.parametrize("flags,message", [
    (["--dataset=imagenet128"], "--dataset"),
    (["--dataset=mnist", "--num_scales=4"], "not divisible by 2**(num_scales - 1) = 8"),
    (["--train_steps=0"], "train_steps must be positive"),
])
def test_bad_flags_fail_before_training(tmp_path, flags, message):
  result = subprocess.run(_train_cmd(tmp_path / "run", *flags), env=_env(),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_multi_worker_mirrored_strategy(tmp_path):
  model_dir = tmp_path / "run"
  cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
  worker = os.path.join(REPO, "tests", "multi_worker_main.py")
  processes, logs = [], []
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                         "index": index}})
    # Logs go to files: a full pipe would block one worker and so both.
    logs.append(open(tmp_path / f"worker_{index}.log", "w+"))
    processes.append(subprocess.Popen(
        [sys.executable, worker, f"--flagfile={SMOKE}", f"--model_dir={model_dir}",
         f"--weights_out={tmp_path / f'weights_{index}.npz'}"],
        env=_env(TF_CONFIG=tf_config), stdout=logs[-1], stderr=subprocess.STDOUT))
  for p, log in zip(processes, logs):
    p.wait(timeout=600)
    log.seek(0)
    assert p.returncode == 0, log.read()[-3000:]
  first = np.load(tmp_path / "weights_0.npz")
  second = np.load(tmp_path / "weights_1.npz")
  assert sorted(first.files) == sorted(second.files) and len(first.files) > 10
  for name in first.files:
    np.testing.assert_array_equal(first[name], second[name])
  assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "export", "metrics.json",
                                           "test", "train"]
  assert _checkpoint_step(str(model_dir)) == 6
  leftovers = glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                     "realnvp_worker_*"))
  assert not [d for d in leftovers if os.path.getmtime(d) > time.time() - 600]


def test_every_config_file_parses_into_valid_configs():
  script = (
      "import glob, sys\n"
      "from absl import flags\n"
      "sys.argv = ['train.py']\n"
      "import train\n"
      "from realnvp_tf import cli, training\n"
      "for path in sorted(glob.glob('configs/*.cfg')):\n"
      "  flags.FLAGS.unparse_flags()\n"
      "  flags.FLAGS(['train.py', '--flagfile=' + path, '--model_dir=/tmp/unused'])\n"
      "  model = cli.model_config_from_flags()\n"
      "  train_config = cli.train_config_from_flags(training.TrainConfig)\n"
      "  print(path, model.image_shape, model.num_scales, train_config.dataset)\n")
  result = subprocess.run([sys.executable, "-c", script], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  printed = result.stdout.strip().splitlines()
  assert len(printed) == len(glob.glob(os.path.join(REPO, "configs", "*.cfg"))) >= 10
  assert any("cifar10.cfg (32, 32, 3) 2 cifar10" in line for line in printed)


def test_training_step_is_the_papers_loss_with_keras_adam(tmp_path):
  """One step equals Keras's Adam on the clipped gradient of bits/dim + L2."""
  trainer = training.Trainer(_model_config(True), _train_config(learning_rate=1e-3),
                             str(tmp_path), strategy=_strategy(1))
  images = tf.random.stateless_uniform([16, 8, 8, 1], [11, 12], 0.0, 17.0)
  before = [v.numpy() for v in trainer.variables]
  copies = [tf.Variable(b) for b in before]
  with tf.GradientTape() as tape:
    log_prob = trainer.flow.log_prob(images, bijector_kwargs={"training": True})
    bits = tf.reduce_mean(realnvp_tf.bits_per_dim(log_prob, (8, 8, 1)))
    l2 = tf.add_n([tf.reduce_sum(tf.square(v))
                   for v in realnvp_tf.weight_scale_variables(trainer.flow)])
    loss = bits + 5e-5 * l2
  gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, trainer.variables), 100.0)
  import keras  # pylint: disable=g-import-not-at-top
  keras.optimizers.Adam(1e-3).apply(gradients, copies)
  step_bits, _, finite = _one_step(trainer, images)
  assert bool(finite)
  np.testing.assert_allclose(step_bits, bits, rtol=1e-5)
  # Adam's first step is about lr * sign(g): 1e-3 per weight. Near-zero gradients
  # (summed in another order here) can differ in sign, so 1% of a step is allowed.
  moved = 0
  for variable, expected, old in zip(trainer.variables, copies, before):
    np.testing.assert_allclose(variable.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    moved += np.sum(np.abs(variable.numpy() - old) > 5e-4)
  assert moved > 100
  assert int(trainer.optimizer.iterations.numpy()) == 1


def _local_batch(trainer, distributed_batch):
  return tf.concat(trainer.strategy.experimental_local_results(distributed_batch), 0)


def _first_batch(trainer):
  return _local_batch(trainer, next(iter(trainer.train_dataset(
      int(trainer.step.numpy())))))


def test_recalibrated_batch_norm_scores_a_batch_as_training_mode_does(tmp_path):
  trainer = training.Trainer(_model_config(), _train_config(), str(tmp_path),
                             strategy=_strategy(1))
  for seed in range(3):
    _one_step(trainer, tf.random.stateless_uniform([16, 8, 8, 1], [seed, 7], 0.0, 17.0))
  weights = [v.numpy() for v in trainer.variables]
  iterations = int(trainer.optimizer.iterations.numpy())
  batch = _first_batch(trainer)
  training_mode = lambda: trainer.flow.log_prob(batch, bijector_kwargs={"training": True})
  lagging = trainer.flow.log_prob(batch).numpy()

  assert trainer.recalibrate_batch_norm(1) == 1
  # One batch: the moving statistics are now that batch's own (the same one the
  # re-estimation drew first), so inference mode scores it exactly as training mode.
  inference = trainer.flow.log_prob(batch).numpy()
  want = training_mode().numpy()
  np.testing.assert_allclose(inference, want, rtol=1e-5)
  assert np.max(np.abs(lagging - want)) > 100 * np.max(np.abs(inference - want))
  # Nothing but the statistics changed.
  for before, variable in zip(weights, trainer.variables):
    np.testing.assert_array_equal(before, variable.numpy())
  assert int(trainer.optimizer.iterations.numpy()) == iterations
  norms = trainer.flow.bijector.batch_norms
  assert len(norms) == len(trainer.flow.non_trainable_variables) // 2
  assert all(norm.momentum == 0.9 for norm in norms)


def test_recalibration_averages_the_statistics_of_the_batches(tmp_path):
  # A fresh flow's couplings are the identity, so the first flow batch norm sees the
  # logit-space images: its statistics can be computed without the flow.
  trainer = training.Trainer(_model_config(), _train_config(), str(tmp_path),
                             strategy=_strategy(1))
  logit, scale = trainer.flow.bijector.chain.steps
  first_norm = scale.steps[1]
  assert isinstance(first_norm, realnvp_tf.bijectors.FlowBatchNorm)
  iterator = iter(trainer.train_dataset(0))
  means, variances = [], []
  for _ in range(3):
    y = logit.inverse(_local_batch(trainer, next(iterator)))
    means.append(np.mean(y.numpy(), axis=(0, 1, 2)))
    variances.append(np.var(y.numpy(), axis=(0, 1, 2)))
  assert trainer.recalibrate_batch_norm(3) == 3
  np.testing.assert_allclose(first_norm.moving_mean.numpy(), np.mean(means, axis=0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(first_norm.moving_variance.numpy(),
                             np.mean(variances, axis=0), rtol=1e-5)
  assert trainer.recalibrate_batch_norm(0) == 0


def test_fit_ends_with_recalibrated_statistics_in_its_checkpoint(tmp_path):
  config = _train_config(train_steps=2, batch_norm_recalibration_batches=1)
  trainer = training.Trainer(_model_config(), config, str(tmp_path),
                             strategy=_strategy(1))
  trainer.fit(progress=False)
  statistics = [v.numpy() for v in trainer.flow.non_trainable_variables]
  batch = _first_batch(trainer)
  np.testing.assert_allclose(
      trainer.flow.log_prob(batch).numpy(),
      trainer.flow.log_prob(batch, bijector_kwargs={"training": True}).numpy(),
      rtol=1e-5)
  # The step's checkpoint was written after the re-estimation.
  resumed = training.Trainer(_model_config(), config, str(tmp_path),
                             strategy=_strategy(1))
  assert resumed.restore() == 2
  for saved, live in zip(resumed.flow.non_trainable_variables, statistics):
    np.testing.assert_array_equal(saved.numpy(), live)


def test_recalibration_leaves_out_nonfinite_batches(tmp_path):
  trainer = _PoisonedTrainer(_model_config(), _train_config(train_steps=2),
                             str(tmp_path), strategy=_strategy(1))
  for seed in range(2):
    _one_step(trainer, tf.random.stateless_uniform([16, 8, 8, 1], [seed, 8], 0.0, 17.0))
  trainer.step.assign(2)
  moving = [v.numpy() for v in trainer.flow.non_trainable_variables]
  trainer.poisoned_steps = range(2, 12)  # every batch of the re-estimation
  assert trainer.recalibrate_batch_norm(5) == 0
  for before, variable in zip(moving, trainer.flow.non_trainable_variables):
    np.testing.assert_array_equal(before, variable.numpy())
  # Every clean batch is the same image batch, so the estimate over 5 batches of
  # which 2 are NaN must be that batch's statistics (the NaNs left out entirely).
  trainer.poisoned_steps = (3, 5)
  assert trainer.recalibrate_batch_norm(1) == 1
  statistics = [v.numpy() for v in trainer.flow.non_trainable_variables]
  assert trainer.recalibrate_batch_norm(5) == 3
  for want, variable in zip(statistics, trainer.flow.non_trainable_variables):
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)
  # A dataset that runs out (10 batches past train_steps) ends the re-estimation.
  trainer.poisoned_steps = ()
  assert trainer.recalibrate_batch_norm(50) == 10
