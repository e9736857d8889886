"""Smoke tests of the benchmark scripts (bench/): they run and print complete JSON.

Each script runs as a subprocess for a few steps, as CI should run benchmarks: the
figures must exist and be finite, but no time or rate is ever asserted (CI machines
are shared and noisy). No real data is needed: throughput.py uses random images and
budget.py trains on the embedded digits set.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from realnvp_tf.model.config import RealNVPConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
sys.path.insert(0, BENCH)


# A smoke run: the quick timing on small batches (the figures are not asserted).
_SMALL = ("--quick", "--batch_size=16", "--eval_batch_size=32",
          "--sample_batch_size=32")


def _run(script, *flags, timeout=600):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  return subprocess.run([sys.executable, os.path.join(BENCH, script), *flags],
                        env=env, capture_output=True, text=True, timeout=timeout,
                        cwd=REPO)


def _json_line(result):
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [line for line in result.stdout.splitlines() if line.strip()]
  assert len(lines) == 1, result.stdout
  return json.loads(lines[0])


def _assert_finite(values, keys):
  for key in keys:
    assert key in values, f"missing {key!r} in {sorted(values)}"
    value = values[key]
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
    assert math.isfinite(value), (key, value)


def test_throughput_quick_prints_every_figure():
  out = _json_line(_run("throughput.py", *_SMALL))
  _assert_finite(out, [
      "parameters", "forward_gflop_per_image", "training_gflop_per_image",
      "train_images_per_s", "eval_images_per_s", "sample_images_per_s",
      "train_gflops_per_s", "conv_gflops_per_s", "conv_gflops_per_s_at_end",
      "conv_gflops_per_s_best", "utilisation_train", "peak_rss_mb",
      "train_bits_per_dim_last", "conv_only_train_images_per_s",
      "conv_only_utilisation", "train_time_in_convs"])
  assert out["config"] == "bench" and out["quick"]
  assert out["malloc_arenas_limited"] is (sys.platform.startswith("linux"))
  assert out["model_config"]["image_shape"] == [28, 28, 1]
  assert out["parameters"] > 0 and out["forward_gflop_per_image"] > 0
  assert all(out["finite"].values()), out["finite"]
  machine = out["machine"]
  assert machine["nproc"] >= 1 and machine["cpu_model"] and machine["tensorflow"]
  # The analytic count (1.1719 GFLOP for the bench config as first written) matches
  # the convolutions of the traced log_prob graph: if the flow changes how it runs
  # its convolutions, update forward_flops in bench/throughput.py.
  assert out["forward_gflop_per_image_graph_convs"] == pytest.approx(
      out["forward_gflop_per_image"], rel=1e-4), (
          "bench/throughput.py's analytic FLOP count disagrees with the graph's")


def test_reference_conv_runs_the_forward_it_counts():
  # The utilisation's denominator: 3 convolutions' FLOPs are counted, so its step must
  # return something that needs the forward conv (grappler prunes what nothing reads).
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  import benchlib  # pylint: disable=g-import-not-at-top  (no flags: any process)
  step, flops, x, kernel, upstream = benchlib.reference_conv(tf, tf.float32)
  loss, dx, dk = step()
  y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
  assert float(loss) == pytest.approx(float(tf.reduce_sum(y * upstream)), rel=1e-4)
  expected_dx = tf.nn.conv2d_transpose(upstream, kernel, tf.shape(x), 1, "SAME")
  assert float(tf.reduce_max(tf.abs(dx - expected_dx))) < 1e-3
  assert dk.shape == kernel.shape
  assert flops == 3 * 2 * 64 * 14 * 14 * 9 * 64 * 64


def test_throughput_bfloat16_prints_every_figure():
  # The smoke model: what is checked here is the bfloat16 path, not the bench model
  # (the test above runs that), and the bench model's step is 4x the time.
  # With the fixed-cost measurement and the op profile (the step-cost issue's
  # figures, measured on configs/mnist_fast.cfg's bfloat16 model).
  out = _json_line(_run("throughput.py", *_SMALL, "--config=smoke",
                        "--mixed_precision=bfloat16", "--batch_sizes=8,32",
                        "--profile"))
  assert out["mixed_precision"] == "bfloat16" and out["config"] == "smoke"
  assert out["model_config"]["compute_dtype"] == "bfloat16"
  _assert_finite(out, ["train_images_per_s", "eval_images_per_s",
                       "sample_images_per_s", "conv_gflops_per_s_bfloat16",
                       "ops_per_step", "fixed_cost_s", "per_image_s",
                       "fixed_cost_fraction"])
  assert all(out["finite"].values()), out["finite"]
  # The fit against numpy's, on the step times it printed (16: the main timing's).
  times = out["step_s_by_batch_size"]
  assert sorted(times, key=int) == ["8", "16", "32"]
  slope, intercept = np.polyfit([8, 16, 32], [times[b] for b in ("8", "16", "32")], 1)
  # (The JSON keeps 5 decimals.)
  assert out["fixed_cost_s"] == pytest.approx(intercept, abs=2e-5)
  assert out["per_image_s"] == pytest.approx(slope, abs=6e-6)
  # The fraction comes from the unrounded figures, the two here are rounded to 5
  # decimals: their quotient is known to within what that rounding moves it (with the
  # one-scale smoke model a step is about 10 ms, so this is about 1e-3 relative).
  fixed, step = out["fixed_cost_s"], times["16"]
  rounding = 5e-6 / step + fixed * 5e-6 / step**2 + 5e-6
  assert abs(out["fixed_cost_fraction"] - fixed / step) <= rounding, (out, rounding)
  profile = out["profile_by_op_type"]
  assert sum(entry["count"] for entry in profile.values()) == out["ops_per_step"]
  assert profile["ResourceApplyAdam"]["count"] == out["trainable_variables"]
  assert set(out["fixed_cost_ms_by_op_type"]) >= {"ResourceApplyAdam"}


def test_fit_fixed_cost_is_least_squares():
  import step_cost
  rng = np.random.default_rng(1)
  sizes = [16, 32, 64, 128]
  seconds = list(0.1 + 0.002 * np.array(sizes) + rng.normal(0, 0.01, 4))
  slope, intercept = np.polyfit(sizes, seconds, 1)
  fixed, per_image = step_cost.fit_fixed_cost(sizes, seconds)
  assert fixed == pytest.approx(intercept, rel=1e-9)
  assert per_image == pytest.approx(slope, rel=1e-9)
  with pytest.raises(ValueError, match="two or more distinct batch sizes"):
    step_cost.fit_fixed_cost([64, 64], [0.1, 0.2])


def test_executed_ops_counts_a_loop_body_once_per_iteration():
  # Kernels executed, not ops in the graph: a loop of n iterations costs a + b n ops
  # (b > 0, the body's and the condition's), and the variables' updates after it are
  # counted once each whatever n.
  import tensorflow as tf

  import step_cost
  variables = [tf.Variable(tf.ones([3, 3])) for _ in range(4)]

  @tf.function
  def f(x, n):
    _, y = tf.while_loop(lambda i, x: i < n,
                         lambda i, x: (i + 1, tf.matmul(x, variables[0]) + 1.0), [0, x])
    for variable in variables:
      variable.assign_add(y)
    return tf.reduce_sum(y)

  counts = {}
  for n in (2, 3, 5):
    f(tf.ones([3, 3]), tf.constant(n))
    total, by_type = step_cost.executed_ops(
        tf, lambda n=n: f(tf.ones([3, 3]), tf.constant(n)).numpy())
    assert total == sum(count for count, _ in by_type.values())
    assert by_type["AssignAddVariableOp"][0] == 4
    counts[n] = total
  per_iteration = counts[3] - counts[2]
  assert per_iteration > 0 and counts[5] - counts[3] == 2 * per_iteration, counts


def test_throughput_of_the_class_conditional_model():
  out = _json_line(_run("throughput.py", *_SMALL, "--config=smoke", "--num_classes=10"))
  assert out["config"] == "smoke" and out["model_config"]["num_classes"] == 10
  _assert_finite(out, ["train_images_per_s", "eval_images_per_s",
                       "sample_images_per_s", "train_bits_per_dim_last"])
  assert all(out["finite"].values()), out["finite"]
  # The label embedding widens each network's first convolution; the analytic count
  # follows the kernels, as the traced graph does.
  assert out["forward_gflop_per_image_graph_convs"] == pytest.approx(
      out["forward_gflop_per_image"], rel=1e-4)


def _test_bits_per_dim(run, select):
  """Test bits/dim of a run directory's `select` weights ("best" or "last"), computed
  here from its checkpoint on the digits test split with the run's noise (seed 0),
  and the step of those weights."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  import realnvp_tf  # pylint: disable=g-import-not-at-top
  from realnvp_tf import data  # pylint: disable=g-import-not-at-top
  images = np.concatenate(list(data.make_dataset("digits", "test", batch_size=100,
                                                 training=False, seed=0)))
  model = realnvp_tf.load(run, select=select)
  bits = realnvp_tf.bits_per_dim(model.log_prob(images), model.image_shape)
  return float(np.mean(bits)), model.metadata["step"]


def test_budget_tiny_run_on_digits_prints_every_figure(tmp_path):
  # 4 steps, an evaluation every 2: the curve has steps 2 and 4 (the final one), the
  # selected weights are those of the better validation figure, and a cosine decay
  # to the step count ends at zero. A learning rate far too large (2) makes the
  # weights of step 4 worse than those of step 2 (4.55 against 4.21 bits/dim, seeded by
  # --deterministic), so the selected weights are not the last ones and the two test
  # figures come from different weights.
  out = _json_line(_run(
      "budget.py", "--dataset=digits", "--minutes=5", "--max_steps=4",
      "--num_res_blocks=1", "--num_filters=4", "--train_eval_images=256",
      "--warmup_steps=2", "--decay=cosine", "--ema_decay=0.9", "--eval_every=2",
      "--eval_images=64", "--batch_norm_recalibration_batches=3", "--deterministic",
      "--learning_rate=2",
      f"--model_dir={tmp_path / 'run'}"))
  _assert_finite(out, [
      "selected_test_bits_per_dim", "selected_validation_bits_per_dim",
      "test_bits_per_dim", "test_bits_per_dim_stderr", "train_batch_bits_per_dim",
      "train_eval_bits_per_dim", "steps", "train_seconds", "eval_seconds",
      "steady_train_images_per_s"])
  assert out["dataset"] == "digits" and out["test_images"] == 297
  assert out["steps"] == 4 and out["train_batch_count"] == 4
  assert [point[1] for point in out["curve"]] == [2, 4]
  minutes = [point[0] for point in out["curve"]]
  # The JSON line rounds every float to 5 decimals, so allow for that.
  assert 0 < minutes[0] <= minutes[1] <= out["train_seconds"] / 60 + 1e-5
  best = min(out["curve"], key=lambda point: point[2])
  assert out["selected_step"] == best[1]
  assert out["selected_validation_bits_per_dim"] == pytest.approx(best[2], abs=1e-4)
  # Both test figures against this test's own evaluation of the weights the run
  # kept: the selected ones (best/) and the last ones (the latest checkpoint, EMA).
  selected, selected_step = _test_bits_per_dim(tmp_path / "run", "best")
  last, last_step = _test_bits_per_dim(tmp_path / "run", "last")
  assert (selected_step, last_step) == (out["selected_step"], 4) == (2, 4)
  assert abs(selected - last) > 0.05
  assert out["selected_test_bits_per_dim"] == pytest.approx(selected, abs=1e-4)
  assert out["test_bits_per_dim"] == pytest.approx(last, abs=1e-4)
  settings = out["settings"]
  assert settings["warmup_steps"] == 2 and settings["ema_decay"] == 0.9
  assert settings["decay"] == "cosine" and settings["final_learning_rate"] == 0.0
  assert settings["batch_norm_recalibration_batches"] == 3
  fields = {f.name for f in dataclasses.fields(RealNVPConfig)}
  assert set(out["model_config"]) == fields
  # --model_dir keeps the run as train.py would leave it; a second run there is
  # refused in one line (a budget run starts from scratch).
  assert (tmp_path / "run" / "metrics.json").exists()
  again = _run("budget.py", "--dataset=digits", f"--model_dir={tmp_path / 'run'}")
  assert again.returncode != 0 and "is not empty" in again.stderr
  assert "Traceback" not in again.stderr


def test_budget_spent_in_the_first_step_still_reports():
  # The docstring's smoke command with a smaller model: the budget runs out while
  # the first step traces. One step, no steady images/s (it was a
  # ZeroDivisionError), figures all the same.
  out = _json_line(_run(
      "budget.py", "--minutes=0.01", "--max_steps=10", "--dataset=digits",
      "--num_res_blocks=1", "--num_filters=4", "--train_eval_images=0",
      "--batch_norm_recalibration_batches=2"))
  assert out["steps"] == 1 and out["steady_train_images_per_s"] is None
  assert out["selected_step"] == 1
  assert out["selected_test_bits_per_dim"] == out["test_bits_per_dim"] > 0
  assert out["train_eval_bits_per_dim"] is None


def test_plot_curves_draws_each_run_in_its_colour(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  import plot_curves  # pylint: disable=g-import-not-at-top
  paths = []
  for name, curve in (("a", [[1.0, 100, 1.6], [10.0, 900, 1.4], [20.0, 1800, 1.35]]),
                      ("b", [[2.0, 300, 1.5], [19.5, 3000, 1.3]])):
    paths.append(tmp_path / f"{name}.json")
    run = dict(curve=curve, selected_test_bits_per_dim=curve[-1][2], steps=curve[-1][1])
    paths[-1].write_text("progress on stderr is not here\n" + json.dumps(run) + "\n")
  output = tmp_path / "curves.png"
  result = _run("plot_curves.py", f"--output={output}", f"a={paths[0]}",
                f"b={paths[1]}")
  assert result.returncode == 0, result.stderr[-2000:]
  pixels = set(Image.open(output).convert("RGB").getdata())
  assert Image.open(output).size == plot_curves._SIZE
  assert set(plot_curves._COLOURS[:2]) <= pixels
  assert plot_curves.nice_ticks(1.3, 1.6) == pytest.approx([1.3, 1.4, 1.5, 1.6])
  bad = _run("plot_curves.py", f"--output={output}", f"a={tmp_path / 'missing.json'}")
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert "missing.json" in bad.stderr


def test_scoring_bench_prints_every_figure():
  # The smoke model: the figures' machinery is what is checked, not the bench model.
  out = _json_line(_run("scoring.py", "--config=smoke", "--images=64",
                        "--batch_size=32", "--repeats=1"))
  _assert_finite(out, ["eval_images_per_s", "score_npy_images_per_s",
                       "score_png_folder_images_per_s", "score_to_eval"])
  assert out["images"] == 64 and out["config"] == "smoke"


def test_trace_time_prints_every_figure():
  out = _json_line(_run("trace_time.py", "--config=smoke"))
  _assert_finite(out, ["eager_first_call_s", "trace_inference_s", "trace_training_s",
                       "ops_inference", "ops_training"])
  # Training mode adds the batch statistics and their moving-average updates.
  assert 0 < out["ops_inference"] < out["ops_training"]
  assert out["config"] == "smoke" and out["machine"]["tensorflow"]
