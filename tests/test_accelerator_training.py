"""What a GPU run relies on, tested on CPU: float16 with dynamic loss scaling, several
steps per call, deterministic runs, and the device self-check."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf import training
from realnvp_tf.runs import loading
from realnvp_tf.training import controller as controller_lib
from realnvp_tf.training import loss_scale as loss_scale_lib
from realnvp_tf.training import step as step_lib

import trainer_fixtures as fx
from trainer_fixtures import REPO


def _float16_config():
  return dataclasses.replace(fx.model_config(), compute_dtype="float16")


def _fixed_stream(trainer, seed=3, count=40):
  """`count` fixed batches (the same for every trainer made with the same seed)."""
  batches = tf.random.stateless_uniform([count, 16, 8, 8, 1], [seed, 1], 0.0, 17.0)
  return iter(trainer.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(batches)))


def _weights(trainer):
  return [v.numpy() for v in trainer.state.flow.variables] + [
      v.numpy() for v in trainer.state.optimizer.optimizer.variables]


# Loss scaling: the object.


def test_loss_scale_halves_on_overflow_grows_after_good_steps_and_has_a_floor():
  scale = loss_scale_lib.DynamicLossScale(initial_scale=8.0, growth_steps=3)
  finite, inf = tf.constant(True), tf.constant(False)
  assert bool(scale.overflowed(finite, inf))  # finite loss, overflowed gradients
  assert not bool(scale.overflowed(inf, inf))  # a non-finite loss is not the scale's
  assert not bool(scale.overflowed(finite, finite))
  scale.after_overflow()
  assert float(scale.scale.numpy()) == 4.0 and int(scale.skipped.numpy()) == 1
  for _ in range(2):
    scale.after_applied_step()
  assert float(scale.scale.numpy()) == 4.0
  scale.after_applied_step()  # the third in a row
  assert float(scale.scale.numpy()) == 8.0 and int(scale.good_steps.numpy()) == 0
  for _ in range(10):
    scale.after_overflow()
  assert float(scale.scale.numpy()) == loss_scale_lib.MIN_SCALE
  assert not bool(scale.overflowed(finite, inf))  # at the floor: counted as non-finite
  np.testing.assert_allclose(
      [g.numpy() for g in scale.unscale([tf.constant([2.0, 4.0])])], [[2.0, 4.0]])
  with pytest.raises(ValueError, match="initial_scale"):
    loss_scale_lib.DynamicLossScale(initial_scale=0.5)


# Loss scaling in the step.


def test_float16_gradients_are_unscaled_once_and_match_float32(tmp_path):
  # The same weights in float32 and float16 (scale 2**10): the unscaled float16
  # gradients equal float32's up to float16 rounding, not 2**10 times them.
  f32 = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path / "a"),
                         strategy=fx.strategy(1))
  f16 = training.Trainer(_float16_config(), fx.train_config(initial_loss_scale=1024.0),
                         str(tmp_path / "b"), strategy=fx.strategy(1))
  for seed in range(3):  # trained a little, so that s and t are not zero
    fx.one_step(f32, fx.images(seed))
  fx.copy_state(f32, f16)
  batch = fx.images(9)
  g32, g16 = fx.gradients(f32, batch), fx.gradients(f16, batch)
  assert abs(g16["bits"] - g32["bits"]) < 1e-3
  np.testing.assert_allclose(g16["grad_norm"], g32["grad_norm"], rtol=0.05)

  def flat(grads):
    return np.concatenate([g.ravel() for g in grads])

  a, b = flat(g32["gradients"]), flat(g16["gradients"])
  assert np.linalg.norm(a - b) < 0.05 * np.linalg.norm(a)


def test_a_forced_overflow_skips_halves_and_trains_on_and_the_scale_survives_resume(
    tmp_path):
  # Growth after 3 applied steps in a row: within the 20 steps the scale comes back
  # up after its overflows (and may overflow again).
  config = fx.train_config(initial_loss_scale=2.0**28, train_steps=20,
                           max_nonfinite_steps=2, checkpoint_every=20,
                           loss_scale_growth_steps=3)
  trainer = training.Trainer(_float16_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  before = _weights(trainer)
  out = trainer.step_fn(_fixed_stream(trainer), 20)
  overflow, finite = out.overflow.numpy(), out.finite.numpy()
  scales = out.loss_scale.numpy()
  skipped = int(overflow.sum())
  # More overflows in a row than max_nonfinite_steps: they do not count toward it.
  assert overflow[0] and skipped > config.max_nonfinite_steps, overflow
  assert len(overflow) == 20 and int(trainer.state.nonfinite_total.numpy()) == 0
  np.testing.assert_array_equal(finite, ~overflow)
  # Each overflow halved the scale for the next step; the third applied step in a
  # row doubled it; the run trained on. The scale each step should have used,
  # written out from the overflows alone:
  expected, good = [2.0**28], 0
  for skipped_step in overflow:
    good = 0 if skipped_step else good + 1
    factor = 0.5 if skipped_step else 2.0 if good == 3 else 1.0
    good %= 3
    expected.append(expected[-1] * factor)
  np.testing.assert_array_equal(scales, expected[:-1])
  grown = np.flatnonzero(scales[1:] == 2 * scales[:-1])
  assert grown.size and grown[0] > np.flatnonzero(overflow)[0], scales  # and back
  assert finite.sum() >= 5 and np.isfinite(out.bits.numpy()).all()
  final_scale = float(trainer.state.loss_scale.scale.numpy())
  assert final_scale == expected[-1]
  assert sum(not np.array_equal(a, b)
             for a, b in zip(before, _weights(trainer), strict=True)) > 20
  trainer.manager.save(checkpoint_number=20)
  trainer.close()
  # A resumed run continues with the scale it had reached, not the initial one.
  resumed = training.Trainer(_float16_config(),
                             dataclasses.replace(config, train_steps=30),
                             str(tmp_path), strategy=fx.strategy(1))
  assert resumed.restore() == 20
  assert float(resumed.state.loss_scale.scale.numpy()) == final_scale
  assert int(resumed.state.loss_scale.skipped.numpy()) == skipped
  resumed.close()


def test_a_run_of_another_precision_resumes_in_float16(tmp_path):
  # The precision may change on resume; a checkpoint written without loss scaling
  # has no scale to restore, and the float16 run starts from the initial one.
  first = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                           strategy=fx.strategy(1))
  first.step_fn(_fixed_stream(first), 3)
  first.manager.save(checkpoint_number=3)
  weights = [v.numpy() for v in first.state.flow.trainable_variables]
  first.close()
  resumed = training.Trainer(_float16_config(),
                             fx.train_config(initial_loss_scale=64.0),
                             str(tmp_path), strategy=fx.strategy(1))
  assert resumed.restore() == 3
  assert float(resumed.state.loss_scale.scale.numpy()) == 64.0
  for a, b in zip(weights, resumed.state.flow.trainable_variables, strict=True):
    np.testing.assert_array_equal(a, b.numpy())
  resumed.close()


@pytest.mark.long
def test_a_float16_run_agrees_with_float32_and_its_export_serves(tmp_path):
  # Trained in float32, the same weights evaluated with float16 s/t networks give the
  # same bits/dim to within 0.002 (measured 0.0002 to 0.0004); a float16 run of its own
  # trains, records its loss scale and exports a SavedModel that a TensorFlow-only
  # process serves with the run's own figures.
  run32, run16 = tmp_path / "f32", tmp_path / "f16"
  common = dict(train_steps=20, eval_every=0, checkpoint_every=20)
  training.Trainer(fx.model_config(), fx.train_config(**common), str(run32),
                   strategy=fx.strategy(1)).fit(progress=False)
  result = subprocess.run(
      fx.train_cmd(run16, "--mixed_precision=float16", "--train_steps=20",
                   "--eval_every=0", "--checkpoint_every=20"), env=fx.env(),
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics16 = json.loads((run16 / "metrics.json").read_text())
  assert metrics16["loss_scale"] >= 1.0 and "loss_scale_skipped_steps" in metrics16
  assert 0.5 < metrics16["bits_per_dim"] < 6.0, metrics16
  images = np.random.RandomState(0).randint(0, 17, (64, 8, 8, 1)).astype(np.uint8)
  f32 = realnvp_tf.load(str(run32))
  f16 = loading.load_checkpoint(str(run32), compute_dtype="float16")
  b32 = np.mean(f32.bits_per_dim(images))
  b16 = np.mean(f16.bits_per_dim(images))
  assert 0.5 < b32 < 6.0 and abs(b16 - b32) < 2e-3, (b32, b16)
  np.save(tmp_path / "images.npy", images)
  served = subprocess.run(
      [sys.executable, "-c", (
          "import sys, numpy as np, tensorflow as tf\n"
          "m = tf.saved_model.load(sys.argv[1])\n"
          "x = tf.constant(np.load(sys.argv[2]))\n"
          "bits = m.bits_per_dim(x, tf.constant([0, 0]))['bits_per_dim']\n"
          "print(float(tf.reduce_mean(bits)))\n"),
       str(run16 / "export"), str(tmp_path / "images.npy")],
      env=fx.env(PYTHONPATH=""), capture_output=True, text=True, timeout=300)
  assert served.returncode == 0, served.stderr[-3000:]
  in_process = np.mean(realnvp_tf.load(str(run16 / "export")).bits_per_dim(images))
  assert abs(float(served.stdout.split()[-1]) - in_process) < 1e-4


# Several steps per call.


def test_n_steps_in_one_call_equal_n_single_steps(tmp_path):
  one = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path / "a"),
                         strategy=fx.strategy(1))
  many = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path / "b"),
                          strategy=fx.strategy(1))
  fx.copy_state(one, many)
  singles = [one.step_fn(stream, 1)
             for stream in [_fixed_stream(one)] for _ in range(5)]
  looped = many.step_fn(_fixed_stream(many), 5)
  np.testing.assert_array_equal(looped.bits.numpy(),
                                [float(s.bits.numpy()[0]) for s in singles])
  for a, b in zip(_weights(one), _weights(many), strict=True):
    np.testing.assert_array_equal(a, b)
  assert int(many.state.step.numpy()) == 5


def test_loops_end_at_every_checkpoint_and_evaluation_step(tmp_path):
  # steps_per_loop=4 with checkpoints every 3 and evaluations every 5 steps: no call
  # runs past them, so each checkpoint holds the weights of its own step.
  config = fx.train_config(train_steps=12, steps_per_loop=4, checkpoint_every=3,
                           eval_every=5)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  calls, evaluated = [], []
  step_fn = trainer.step_fn

  def counting_step(iterator, num_steps):
    calls.append((int(trainer.state.step.numpy()), num_steps))
    return step_fn(iterator, num_steps)

  trainer.step_fn = counting_step
  # A validation action, as KeepBestWeights is: told each figure and its step.
  trainer.validation.actions.append(lambda step, result: evaluated.append(step))
  seen = []
  trainer.train(actions=[lambda result: seen.append((result.step, result.current))],
                progress=False)
  assert calls == [(0, 3), (3, 2), (5, 1), (6, 3), (9, 1), (10, 2)], calls
  assert evaluated == [5, 10]
  assert [s for s, _ in seen] == list(range(1, 13))
  assert [s for s, current in seen if current] == [3, 5, 6, 9, 10, 12]
  # Saved at 3, 6, 9 and 12 (the manager keeps the newest three), each holding the
  # step counter of its own step.
  kept = {int(p.rsplit("-", 1)[1]): p for p in trainer.manager.checkpoints}
  assert sorted(kept) == [6, 9, 12]
  for number, path in kept.items():
    assert tf.train.load_checkpoint(path).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE") == number
  trainer.close()


def test_controller_loop_size_and_a_step_function_that_takes_no_step():
  class Due:
    def next_due(self, step):
      return (step // 7 + 1) * 7

    def __call__(self, result):
      pass

  step = tf.Variable(0, dtype=tf.int64)
  loop = controller_lib.Controller(None, step, [Due()], steps_per_loop=10)
  assert loop.loop_size(0, 100) == 7 and loop.loop_size(7, 100) == 7
  assert loop.loop_size(12, 13) == 1
  assert controller_lib.Controller(None, step, steps_per_loop=10).loop_size(0, 25) == 10
  with pytest.raises(ValueError, match="steps_per_loop"):
    controller_lib.Controller(None, step, steps_per_loop=0)

  def none(iterator, n):
    return step_lib.StepOutput(*[np.zeros([0])] * len(step_lib.StepOutput._fields))

  with pytest.raises(RuntimeError, match="took no step"):
    controller_lib.Controller(none, step).run(None, 5)


def test_a_loop_stops_at_max_nonfinite_steps_in_a_row(tmp_path):
  config = fx.train_config(max_nonfinite_steps=3, steps_per_loop=10, train_steps=10)
  trainer = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  nan = tf.fill([10, 16, 8, 8, 1], np.nan)
  out = trainer.step_fn(iter(trainer.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(nan))), 10)
  assert len(out.finite.numpy()) == 3 and not out.finite.numpy().any()
  trainer.close()


# Deterministic runs.


def test_two_deterministic_runs_give_bit_identical_weights_and_metrics(tmp_path):
  runs = [tmp_path / "a", tmp_path / "b"]
  for run in runs:
    result = subprocess.run(
        fx.train_cmd(run, "--deterministic", "--steps_per_loop=2", "--noexport"),
        env=fx.env(),
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

  def reader(run):
    return tf.train.load_checkpoint(tf.train.latest_checkpoint(
        str(run / "checkpoints")))

  a, b = reader(runs[0]), reader(runs[1])
  names = [n for n in a.get_variable_to_shape_map() if "OBJECT_GRAPH" not in n]
  assert len(names) > 50
  for name in names:
    np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)
  metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
  for m in metrics:
    m.pop("model_dir", None)
  assert metrics[0]["bits_per_dim"] == metrics[1]["bits_per_dim"]
  assert metrics[0]["validation_history"] == metrics[1]["validation_history"]


_OP_DETERMINISM = """
import sys
from tensorflow.python.framework import config
from realnvp_tf import training
from realnvp_tf.model.config import RealNVPConfig
model = RealNVPConfig(image_shape=(8, 8, 1), num_levels=17, num_scales=1,
                      num_res_blocks=1, num_filters=4)
for name, deterministic in (("plain", False), ("deterministic", True)):
  training.Trainer(model, training.TrainConfig(
      dataset="digits", batch_size=16, train_steps=1, export=False,
      deterministic=deterministic), sys.argv[1] + "/" + name).close()
  print(name, config.is_op_determinism_enabled())
"""


def test_a_deterministic_trainer_turns_on_op_determinism_and_a_plain_one_does_not(
    tmp_path):
  # On CPU the kernels the smoke model uses are deterministic already, so a
  # bit-identical pair alone would pass without op determinism: look at the switch.
  # (A fresh process: the switch is process-wide and cannot be turned off again.)
  result = subprocess.run([sys.executable, "-c", _OP_DETERMINISM, str(tmp_path)],
                          env=fx.env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["plain", "False", "deterministic", "True"]


# The device self-check.


def _device_check(*flags):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "bench", "device_check.py"), "--config=smoke",
       *flags], env=fx.env(), capture_output=True, text=True, timeout=900)
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1, (result.stdout, result.stderr[-3000:])
  return result, json.loads(lines[0])


def _failure(result):
  """What a failed device check printed: its JSON line first (which check failed)."""
  return result.stdout[-3000:] + result.stderr[-2000:]


def _training_bits_per_dim(precision, weights, images):
  """Training-mode bits/dim of each of `images` under the bench's smoke model in
  `precision` with `weights`: the test's own evaluation of a device-check row."""
  from realnvp_tf.model import config as config_lib  # pylint: disable=g-import-not-at-top
  from realnvp_tf.model import flow as flow_lib  # pylint: disable=g-import-not-at-top
  model_config = config_lib.RealNVPConfig(
      image_shape=(8, 8, 1), num_scales=1, num_res_blocks=1, num_filters=4,
      num_levels=17, compute_dtype=precision)
  flow = flow_lib.build_realnvp(model_config)
  assert len(flow.variables) == len(weights)
  for variable, value in zip(flow.variables, weights, strict=True):
    variable.assign(value)
  log_prob = flow_lib.log_prob(flow, tf.constant(images), None, training=True)
  return flow_lib.bits_per_dim(log_prob, (8, 8, 1)).numpy().astype(np.float64)


@pytest.mark.long
@pytest.mark.timeout(1200)
def test_device_check_figures_match_an_evaluation_of_its_own_inputs(tmp_path):
  # Each precision's figure is checked against this test's evaluation of the weights
  # and images the script saved (a precision silently replaced by float32 would give
  # float32's figure), and two devices against one on the gradients of one step (an
  # averaging reduction halves them; Adam's weights would not show it).
  result, out = _device_check("--steps=3", "--steps_per_loop=1", "--logical_cpus=2",
                              f"--save_inputs={tmp_path}")
  assert result.returncode == 0, _failure(result)
  assert out["ok"] is True, out
  # train.py's strategy on a CPU is one device; the check still compares two.
  assert out["strategy"] == "MirroredStrategy" and out["replicas"] == 1
  assert len(out["devices"]) == 2
  rows = {r["precision"]: r for r in out["settings"]}
  assert set(rows) == {"float32", "bfloat16", "float16"}
  saved = np.load(tmp_path / "inputs.npz")
  weights = [saved[f"weight_{i}"] for i in range(len(saved.files) - 1)]
  bits = {p: _training_bits_per_dim(p, weights, saved["images"]) for p in rows}
  for precision, r in rows.items():
    assert r["images_per_s"] > 0 and r["ok"], r
    mean = np.mean(bits[precision])
    assert r["bits_per_dim"] == pytest.approx(mean, abs=1e-7), (r, mean)
    assert r["bits_per_dim_vs_float32"] == pytest.approx(
        mean - np.mean(bits["float32"]), abs=2e-7)
    assert r["mean_abs_image_difference_vs_float32"] == pytest.approx(
        np.mean(np.abs(bits[precision] - bits["float32"])), abs=2e-7)
  # The reduced precisions really ran: their images' figures are not float32's. (Per
  # image: float16 differs from float32 by up to about 3e-4 an image on these
  # weights, but the batch's mean once came out equal to the last bit; the JSON line
  # keeps 9 decimals.)
  for precision in ("bfloat16", "float16"):
    assert rows[precision]["mean_abs_image_difference_vs_float32"] > 1e-6, rows
  assert rows["float32"]["mean_abs_image_difference_vs_float32"] == 0
  two = out["two_devices_vs_one"]
  assert two["ok"] and two["relative_weight_difference"] < 1e-2, two
  # No weight further apart than Adam can move one in 3 steps (learning rate 1e-3).
  assert two["max_abs_weight_difference"] <= 2 * 1e-3 * 3, two
  # Round-off differs by machine (1e-6 to 5.4e-3 measured); SUM vs MEAN gives 0.5.
  assert 0 <= two["max_relative_gradient_difference"] <= 2e-2, two


@pytest.mark.long
@pytest.mark.timeout(900)
def test_device_check_exits_1_with_its_figures_when_a_check_fails():
  # No tolerance at all: bfloat16 cannot agree with float32 exactly, so the check fails;
  # the JSON line still comes, then exit status 1, and no traceback.
  result, out = _device_check("--steps=1", "--steps_per_loop=1,2",
                              "--precisions=float32,bfloat16", "--tolerance_scale=0")
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert out["ok"] is False and out["two_devices_vs_one"] is None
  rows = {(r["precision"], r["steps_per_loop"]): r for r in out["settings"]}
  assert set(rows) == {(p, n) for p in ("float32", "bfloat16") for n in (1, 2)}
  assert all(r["images_per_s"] > 0 and r["tolerance"] == 0 for r in rows.values())
  assert rows["float32", 1]["ok"] and not rows["bfloat16", 1]["ok"]
