"""Training: checkpoints and resume, non-finite steps, EMA, logs, signals, flags."""

import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf import training
from realnvp_tf.evaluation import likelihood

import trainer_fixtures as fx
from trainer_fixtures import REPO


def test_batch_size_must_divide_over_replicas(tmp_path):
  with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
    training.Trainer(fx.model_config(), fx.train_config(batch_size=15), str(tmp_path),
                     strategy=fx.strategy(2))


def test_train_config_and_dataset_checks(tmp_path):
  with pytest.raises(ValueError, match="Unknown dataset"):
    fx.train_config(dataset="imagenet128")
  with pytest.raises(ValueError, match="shape"):
    training.Trainer(fx.model_config(), fx.train_config(dataset="mnist"), str(tmp_path),
                     strategy=fx.strategy(1))


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


def _snapshot(trainer):
  """Every variable a step may touch: weights, moving statistics, Adam's slots and
  iteration count, EMA weights."""
  variables = (list(trainer.state.flow.variables)
               + list(trainer.state.optimizer.optimizer.variables)
               + list(trainer.state.ema or []))
  return [v.numpy().copy() for v in variables]


def test_a_skipped_step_leaves_every_variable_as_it_was(tmp_path):
  trainer = training.Trainer(fx.model_config(), fx.train_config(ema_decay=0.9),
                             str(tmp_path), strategy=fx.strategy(1))
  for seed in range(2):  # non-zero Adam slots, moved moving averages and EMA
    fx.one_step(trainer, fx.images(seed))
  before = _snapshot(trainer)
  images = fx.images(7).numpy()
  images[3, 2, 2, 0] = np.nan
  _, _, finite = fx.one_step(trainer, tf.constant(images))
  assert not bool(finite)
  after = _snapshot(trainer)
  assert len(after) == len(before) > 50
  for old, new in zip(before, after, strict=True):
    np.testing.assert_array_equal(new, old)
  assert (int(trainer.state.step.numpy()) == 3
          and int(trainer.state.nonfinite_total.numpy()) == 1)
  # And a finite step after it changes them again.
  fx.one_step(trainer, fx.images(8))
  assert sum(not np.array_equal(a, b)
             for a, b in zip(_snapshot(trainer), before, strict=True)) > 50


def test_poisoned_batch_is_skipped_and_counted_in_tensorboard(tmp_path):
  trainer = _PoisonedTrainer(fx.model_config(), fx.train_config(train_steps=5),
                             str(tmp_path), strategy=fx.strategy(1))
  trainer.poisoned_steps = (2,)
  metrics = trainer.fit(progress=False)
  assert metrics["nonfinite_steps"] == 1
  assert metrics["step"] == 5
  assert np.isfinite(metrics["bits_per_dim"])
  assert int(trainer.state.optimizer.iterations.numpy()) == 4  # one update skipped
  assert all(np.all(np.isfinite(v.numpy())) for v in trainer.state.flow.variables)
  skipped = _scalars(str(tmp_path / "train"))["nonfinite_steps"]
  assert [(step, int(tf.make_ndarray(v.tensor))) for step, v in skipped] == [
      (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]


def test_consecutive_nonfinite_steps_stop_with_checkpoint_intact(tmp_path):
  config = fx.train_config(train_steps=20, checkpoint_every=2, max_nonfinite_steps=3)
  trainer = _PoisonedTrainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  # Steps 1-4 are good; steps 5, 6 and 7 are not: stopped at step 7, after the
  # checkpoint of step 6, which holds step 4's weights (steps 5 and 6 were skipped).
  trainer.poisoned_steps = tuple(range(4, 20))
  with pytest.raises(training.NonFiniteLossError, match="3 consecutive steps"):
    trainer.fit(progress=False)
  restored = training.Trainer(fx.model_config(), config, str(tmp_path),
                              strategy=fx.strategy(1))
  assert restored.restore() == 6
  at_four = training.Trainer(fx.model_config(), config, str(tmp_path / "other"),
                             strategy=fx.strategy(1))
  at_four.state.checkpoint.restore(os.path.join(tmp_path, "checkpoints", "ckpt-4"))
  assert int(at_four.state.step.numpy()) == 4
  for a, b in zip(restored.state.flow.variables, at_four.state.flow.variables,
                  strict=True):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert all(np.all(np.isfinite(v.numpy())) for v in restored.state.flow.variables)
  lp = restored.state.flow.log_prob(
      tf.random.stateless_uniform([4, 8, 8, 1], [7, 8], 0, 17))
  assert np.all(np.isfinite(lp))


def test_checkpoints_keep_the_latest_three(tmp_path):
  trainer = training.Trainer(
      fx.model_config(), fx.train_config(train_steps=5, checkpoint_every=1,
                                         batch_norm_recalibration_batches=0),
      str(tmp_path), strategy=fx.strategy(1))
  trainer.fit(progress=False)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["checkpoint"] + [
      f"ckpt-{step}.{ext}" for step in (3, 4, 5)
      for ext in ("data-00000-of-00001", "index")]


def test_evaluation_and_export_use_the_ema_weights(tmp_path):
  config = fx.train_config(train_steps=6, ema_decay=0.7, export=True,
                           learning_rate=5e-3)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  metrics = trainer.fit(progress=False)

  def score():
    return likelihood.evaluate_bits_per_dim(
        trainer.state.flow.log_prob, trainer.evaluator.dataset("test"),
        fx.IMAGE_SHAPE)["bits_per_dim"]

  raw = score()
  with trainer.state.averaged_weights():
    averaged = score()
    batch = next(iter(trainer.evaluator.dataset("test")))
    averaged_log_prob = trainer.state.flow.log_prob(batch).numpy()
  assert abs(raw - averaged) > 1e-3  # the two weight sets score differently
  assert metrics["bits_per_dim"] == pytest.approx(averaged, abs=1e-5)
  exported = tf.saved_model.load(str(tmp_path / "export"))
  np.testing.assert_allclose(exported.log_prob(batch)["log_prob"].numpy(),
                             averaged_log_prob, rtol=1e-5)


def test_ema_validation_uses_statistics_of_the_averaged_weights(tmp_path):
  config = fx.train_config(train_steps=6, ema_decay=0.7, learning_rate=5e-3,
                           eval_every=0, eval_images=0,
                           batch_norm_recalibration_batches=2)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  trainer.train(progress=False)
  statistics = trainer.state.flow.non_trainable_variables
  moving = [v.numpy() for v in statistics]
  figure = trainer.validation()["bits_per_dim"]
  # The moving averages are put back afterwards.
  for variable, value in zip(statistics, moving, strict=True):
    np.testing.assert_array_equal(variable.numpy(), value)

  # By hand: EMA weights, statistics re-estimated for them on the same training
  # batches, then the validation images; the moving averages alone score otherwise.
  def score():
    return likelihood.evaluate_bits_per_dim(
        trainer.state.flow.log_prob, trainer.evaluator.dataset("validation"),
        fx.IMAGE_SHAPE)["bits_per_dim"]

  with trainer.state.averaged_weights():
    with_moving_averages = score()
    trainer.recalibrate_batch_norm(2)
    by_hand = score()
  trainer.close()
  assert figure == pytest.approx(by_hand, abs=1e-5)
  assert abs(by_hand - with_moving_averages) > 1e-3


class _RecordingTrainer(training.Trainer):
  """Records the step each training stream starts from."""

  def train_dataset(self, start_step):
    self.stream_starts = getattr(self, "stream_starts", []) + [start_step]
    return super().train_dataset(start_step)


def test_resume_restores_the_ema_weights_and_the_epoch_position(tmp_path):
  config = fx.train_config(train_steps=4, ema_decay=0.9,
                           batch_norm_recalibration_batches=0, checkpoint_every=4)
  first = training.Trainer(fx.model_config(), config, str(tmp_path),
                           strategy=fx.strategy(1))
  first.fit(progress=False)
  resumed = _RecordingTrainer(fx.model_config(), dataclasses.replace(
      config, train_steps=5), str(tmp_path), strategy=fx.strategy(1))
  resumed.stream_starts = []
  assert resumed.restore() == 4
  for a, b in zip(first.state.ema, resumed.state.ema, strict=True):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  resumed.fit(progress=False)
  assert resumed.stream_starts[0] == 4  # the training stream of a resumed run

  # The position is kept by epoch (digits: 1,300 training images, 81 batches of 16):
  # a run resumed at step 100 starts epoch 1 afresh, the way step 81 began it.
  def batch(start):
    return fx.local_batch(first, next(iter(first.train_dataset(start))))

  np.testing.assert_array_equal(batch(100), batch(81))
  assert not np.array_equal(batch(81), batch(80))
  np.testing.assert_array_equal(batch(80), batch(0))


def _scalars(event_dir):
  values = {}
  for path in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values.setdefault(value.tag, []).append((event.step, value))
  return values


def test_train_py_smoke_run_writes_everything(tmp_path):
  model_dir = tmp_path / "run"
  result = subprocess.run(fx.train_cmd(model_dir), env=fx.env(), capture_output=True,
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
  # Validation every 3 steps and at the end; the test split once, at the end.
  validation = _scalars(str(model_dir / "validation"))
  assert [step for step, _ in validation["bits_per_dim"]] == [3, 6]
  assert [step for step, _ in validation["samples"]] == [3, 6]
  encoded = tf.io.decode_png(validation["samples"][0][1].tensor.string_val[2])
  assert encoded.shape[0] > 8 and encoded.shape[2] == 1
  test = _scalars(str(model_dir / "test"))
  assert [step for step, _ in test["bits_per_dim"]] == [6]
  assert "validation bits/dim: " in result.stdout and "(step 3)" in result.stdout
  assert [step for step, _ in metrics["validation_history"]] == [3, 6]


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
  process = subprocess.Popen(fx.train_cmd(model_dir, *flags), env=fx.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  # The manager writes ckpt-N.index before the "checkpoint" state file that
  # names it; a kill between the two leaves no checkpoint to resume from.
  _wait_for(os.path.join(model_dir, "checkpoints", "checkpoint"), process)
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

  result = subprocess.run(fx.train_cmd(model_dir, *flags), env=fx.env(),
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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_current_step_and_exits_cleanly(tmp_path, signum):
  model_dir = str(tmp_path / "run")
  log = open(tmp_path / "train.log", "w+")  # a file: a full pipe would block training
  process = subprocess.Popen(
      fx.train_cmd(model_dir, "--train_steps=100000", "--checkpoint_every=5",
                 "--eval_every=0"),
      env=fx.env(), stdout=subprocess.DEVNULL, stderr=log)
  _wait_for(os.path.join(model_dir, "checkpoints", "ckpt-5.index"), process)
  time.sleep(1.0)
  process.send_signal(signum)
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
    (["--train_steps=0"], "flag --train_steps=0: 0 is not a positive integer"),
])
def test_bad_flags_fail_before_training(tmp_path, flags, message):
  result = subprocess.run(fx.train_cmd(tmp_path / "run", *flags), env=fx.env(),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def _print_each_config(script):
  """The lines a fresh process running `script` prints (one per config file)."""
  result = subprocess.run([sys.executable, "-c", script], env=fx.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.strip().splitlines()


def test_every_config_file_parses_into_valid_configs():
  script = (
      "import glob, sys\n"
      "from absl import flags\n"
      "sys.argv = ['train.py']\n"
      "import train\n"
      "from realnvp_tf import training\n"
      "from realnvp_tf.apps import cli\n"
      "for path in sorted(glob.glob('configs/*.cfg')):\n"
      "  flags.FLAGS.unparse_flags()\n"
      "  flags.FLAGS(['train.py', '--flagfile=' + path, '--model_dir=/tmp/unused'])\n"
      "  model = cli.model_config_from_flags()\n"
      "  train_config = cli.train_config_from_flags(training.TrainConfig)\n"
      "  print(path, model.image_shape, model.num_scales, train_config.dataset)\n")
  printed = _print_each_config(script)
  assert len(printed) == len(glob.glob(os.path.join(REPO, "configs", "*.cfg"))) >= 10
  assert any("cifar10.cfg (32, 32, 3) 2 cifar10" in line for line in printed)


def test_every_config_file_parses_with_the_budget_benchmark_too():
  # One flagfile serves train.py and bench/budget.py: the recipe of a time budget
  # is measured with the flags a user trains with.
  script = (
      "import glob, sys\n"
      "sys.path.insert(0, 'bench')\n"
      "from absl import flags\n"
      "sys.argv = ['budget.py']\n"
      "import budget\n"
      "from realnvp_tf.apps import cli\n"
      "for path in sorted(glob.glob('configs/*.cfg')):\n"
      "  flags.FLAGS.unparse_flags()\n"
      "  flags.FLAGS(['budget.py', '--flagfile=' + path])\n"
      "  c = cli.train_config_from_flags()\n"
      "  print(path, c.dataset, c.train_minutes, c.decay, c.decay_fraction,\n"
      "        budget._budget_minutes())\n")
  printed = _print_each_config(script)
  assert len(printed) == len(glob.glob(os.path.join(REPO, "configs", "*.cfg")))
  assert "configs/mnist_fast.cfg mnist 20.0 cosine 0.2 20.0" in printed
  assert "configs/mnist.cfg mnist 0.0 none 1.0 20.0" in printed


def test_recalibrated_batch_norm_scores_a_batch_as_training_mode_does(tmp_path):
  trainer = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                             strategy=fx.strategy(1))
  for seed in range(3):
    fx.one_step(trainer,
                tf.random.stateless_uniform([16, 8, 8, 1], [seed, 7], 0.0, 17.0))
  weights = [v.numpy() for v in trainer.state.variables]
  iterations = int(trainer.state.optimizer.iterations.numpy())
  batch = fx.first_batch(trainer)

  def training_mode():
    return trainer.state.flow.log_prob(batch, bijector_kwargs={"training": True})

  lagging = trainer.state.flow.log_prob(batch).numpy()

  assert trainer.recalibrate_batch_norm(1) == 1
  # One batch: the moving statistics are now that batch's own (the same one the
  # re-estimation drew first), so inference mode scores it exactly as training mode.
  inference = trainer.state.flow.log_prob(batch).numpy()
  want = training_mode().numpy()
  np.testing.assert_allclose(inference, want, rtol=1e-5)
  assert np.max(np.abs(lagging - want)) > 100 * np.max(np.abs(inference - want))
  # Nothing but the statistics changed.
  for before, variable in zip(weights, trainer.state.variables, strict=True):
    np.testing.assert_array_equal(before, variable.numpy())
  assert int(trainer.state.optimizer.iterations.numpy()) == iterations
  norms = trainer.state.flow.bijector.batch_norms
  assert len(norms) == len(trainer.state.flow.non_trainable_variables) // 2
  assert all(norm.momentum == 0.9 for norm in norms)


def test_recalibration_averages_the_statistics_of_the_batches(tmp_path):
  # A fresh flow's couplings are the identity, so the first flow batch norm sees the
  # logit-space images: its statistics can be computed without the flow.
  trainer = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                             strategy=fx.strategy(1))
  logit, scale = trainer.state.flow.bijector.chain.steps
  first_norm = scale.steps[1]
  assert isinstance(first_norm, realnvp_tf.model.bijectors.FlowBatchNorm)
  iterator = iter(trainer.train_dataset(0))
  means, variances = [], []
  for _ in range(3):
    y = logit.inverse(fx.local_batch(trainer, next(iterator)))
    means.append(np.mean(y.numpy(), axis=(0, 1, 2)))
    variances.append(np.var(y.numpy(), axis=(0, 1, 2)))
  assert trainer.recalibrate_batch_norm(3) == 3
  np.testing.assert_allclose(first_norm.moving_mean.numpy(), np.mean(means, axis=0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(first_norm.moving_variance.numpy(),
                             np.mean(variances, axis=0), rtol=1e-5)
  assert trainer.recalibrate_batch_norm(0) == 0


def test_fit_ends_with_recalibrated_statistics_in_its_checkpoint(tmp_path):
  config = fx.train_config(train_steps=2, batch_norm_recalibration_batches=1)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  trainer.fit(progress=False)
  statistics = [v.numpy() for v in trainer.state.flow.non_trainable_variables]
  batch = fx.first_batch(trainer)
  np.testing.assert_allclose(
      trainer.state.flow.log_prob(batch).numpy(),
      trainer.state.flow.log_prob(batch, bijector_kwargs={"training": True}).numpy(),
      rtol=1e-5)
  # The step's checkpoint was written after the re-estimation.
  resumed = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  assert resumed.restore() == 2
  for saved, live in zip(resumed.state.flow.non_trainable_variables, statistics,
                         strict=True):
    np.testing.assert_array_equal(saved.numpy(), live)


def test_recalibration_leaves_out_nonfinite_batches(tmp_path):
  trainer = _PoisonedTrainer(fx.model_config(), fx.train_config(train_steps=2),
                             str(tmp_path), strategy=fx.strategy(1))
  for seed in range(2):
    fx.one_step(trainer,
                tf.random.stateless_uniform([16, 8, 8, 1], [seed, 8], 0.0, 17.0))
  trainer.state.step.assign(2)
  moving = [v.numpy() for v in trainer.state.flow.non_trainable_variables]
  trainer.poisoned_steps = range(2, 12)  # every batch of the re-estimation
  assert trainer.recalibrate_batch_norm(5) == 0
  for before, variable in zip(moving, trainer.state.flow.non_trainable_variables,
                              strict=True):
    np.testing.assert_array_equal(before, variable.numpy())
  # Every clean batch is the same image batch, so the estimate over 5 batches of
  # which 2 are NaN must be that batch's statistics (the NaNs left out entirely).
  trainer.poisoned_steps = (3, 5)
  assert trainer.recalibrate_batch_norm(1) == 1
  statistics = [v.numpy() for v in trainer.state.flow.non_trainable_variables]
  assert trainer.recalibrate_batch_norm(5) == 3
  for want, variable in zip(statistics, trainer.state.flow.non_trainable_variables,
                            strict=True):
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)
  # A dataset that runs out (10 batches past train_steps) ends the re-estimation.
  trainer.poisoned_steps = ()
  assert trainer.recalibrate_batch_norm(50) == 10
