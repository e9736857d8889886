"""SavedModel export and eval.py."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf.runs import export

from flow_checks import perturb_variables
from flow_checks import relative_error
import trainer_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 1)


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  config = realnvp_tf.RealNVPConfig(image_shape=SHAPE, num_levels=17, num_scales=2,
                                    num_res_blocks=1, num_filters=4)
  flow = realnvp_tf.build_realnvp(config)
  perturb_variables(flow, seed=3)
  path = str(tmp_path_factory.mktemp("export") / "model")
  export.export_saved_model(flow, path, metadata={
      "dataset": "digits",
      "typicality_reference": dict(mean=2.5, std=0.25, num_images=9,
                                    split="validation")})
  return flow, path


def _pixels(n, seed):
  integers = tf.random.stateless_uniform((n,) + SHAPE, [seed, 0], 0, 17, tf.int32)
  return tf.cast(integers, tf.float32) + tf.random.stateless_uniform(
      (n,) + SHAPE, [seed, 1], 0.0, 0.999)


def test_fresh_tensorflow_only_process_serves_the_export(exported, tmp_path):
  flow, path = exported
  x = _pixels(5, 1).numpy()
  np.save(tmp_path / "x.npy", x)
  script = textwrap.dedent(f"""
      import sys
      import numpy as np
      import tensorflow as tf
      m = tf.saved_model.load({path!r})
      x = np.load({str(tmp_path / 'x.npy')!r})
      z = m.encode(x)["z"]
      decoded = m.decode(z)
      out = dict(
          log_prob=m.log_prob(x)["log_prob"].numpy(),
          bits=m.bits_per_dim(np.floor(x).astype(np.uint8),
                              [4, 5])["bits_per_dim"].numpy(),
          **{{"ood_" + k: v.numpy() for k, v in
              m.ood_scores(np.floor(x).astype(np.uint8), [4, 5]).items()}},
          sample_a=m.sample(3, 0.7, [1, 2])["values"].numpy(),
          sample_b=m.sample(3, 0.7, [1, 2])["values"].numpy(),
          sample_images=m.sample(3, 0.7, [1, 2])["images"].numpy(),
          sample_cold=m.sample(2, 0.0, [3, 4])["values"].numpy(),
          z=z.numpy(),
          roundtrip=decoded["values"].numpy(),
          roundtrip_images=decoded["images"].numpy(),
          serving_default=m.signatures["serving_default"](images=tf.constant(x))["log_prob"].numpy())
      np.savez({str(tmp_path / 'out.npz')!r}, **out)
      loaded = sorted(name for name in sys.modules
                      if name.split(".")[0] in ("realnvp_tf", "tensorflow_probability"))
      assert not loaded, loaded
  """)
  result = subprocess.run([sys.executable, "-c", script],
                          env=dict(_env(), PYTHONPATH=""), capture_output=True,
                          text=True, timeout=300, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  # Every signature against the flow of this (the exporting) process.
  expected = flow.log_prob(tf.constant(x)).numpy()
  assert relative_error(out["log_prob"], expected) < 1e-4
  assert relative_error(out["serving_default"], expected) < 1e-4
  assert relative_error(out["z"], flow.bijector.inverse(tf.constant(x))) < 1e-4
  np.testing.assert_allclose(out["roundtrip"], x, rtol=1e-3, atol=1e-3)
  np.testing.assert_array_equal(out["roundtrip_images"],
                                np.floor(out["roundtrip"]).clip(0, 16))
  # bits_per_dim with seed (4, 5): image i's noise is the evaluation noise of image
  # 5 + i with seed 4, U[0, 1) keyed by fold_in((4, 0), 5 + i).
  noise = tf.stack([tf.random.stateless_uniform(
      SHAPE, tf.random.experimental.stateless_fold_in(
          tf.constant([4, 0], tf.int64), tf.constant(5 + i, tf.int64)))
      for i in range(5)])
  dequantized = np.floor(x) + noise.numpy()
  want_bits = -flow.log_prob(tf.constant(dequantized)).numpy() / (64 * np.log(2.0))
  assert relative_error(out["bits"], want_bits) < 1e-4
  # ood_scores: the same bits/dim; PNG lengths; the typicality reference exported.
  np.testing.assert_array_equal(out["ood_bits_per_dim"], out["bits"])
  png = [8 * len(tf.io.encode_png(image, compression=9).numpy()) / 64
         for image in np.floor(x).astype(np.uint8)]
  np.testing.assert_allclose(out["ood_png_bits_per_dim"], png, rtol=1e-6)
  np.testing.assert_allclose(out["ood_complexity_corrected"], out["bits"] - png,
                             rtol=1e-5)
  np.testing.assert_allclose(out["ood_typicality"], np.abs(out["bits"] - 2.5),
                             rtol=1e-5)
  np.testing.assert_allclose(out["ood_batch_typicality"],
                             abs(out["bits"].mean() - 2.5) / (0.25 / np.sqrt(5)),
                             rtol=1e-5)
  # sample(n, T, seed) decodes T * N(0, 1) noise drawn with the seed: T = 0 is z = 0.
  np.testing.assert_array_equal(out["sample_a"], out["sample_b"])
  z = 0.7 * tf.random.stateless_normal((3,) + SHAPE, [1, 2])
  assert relative_error(out["sample_a"], flow.bijector.forward(z)) < 1e-4
  cold = flow.bijector.forward(tf.zeros((1,) + SHAPE)).numpy()
  for value in out["sample_cold"]:
    assert relative_error(value, cold[0]) < 1e-4
  assert out["sample_images"].dtype == np.uint8 and out["sample_images"].max() <= 16
  np.testing.assert_array_equal(out["sample_images"],
                                np.floor(np.clip(out["sample_a"], 0, 16)).astype(
                                    np.uint8))


def test_saved_model_cli_lists_and_runs_signatures(exported, tmp_path):
  _, path = exported
  show = subprocess.run(["saved_model_cli", "show", "--dir", path, "--all"],
                        env=_env(), capture_output=True, text=True, timeout=300)
  assert show.returncode == 0, show.stderr[-2000:]
  for name in ("serving_default", "log_prob", "bits_per_dim", "ood_scores", "sample",
               "encode", "decode"):
    assert f"signature_def['{name}']" in show.stdout
  assert "shape: (-1, 8, 8, 1)" in show.stdout
  images = tmp_path / "images.npy"
  np.save(images, np.full((2, 8, 8, 1), 3.5, np.float32))
  run = subprocess.run(
      ["saved_model_cli", "run", "--dir", path, "--tag_set", "serve",
       "--signature_def", "log_prob", "--inputs", f"images={images}",
       "--outdir", str(tmp_path / "out")],
      env=_env(), capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  log_prob = np.load(tmp_path / "out" / "log_prob.npy")
  assert log_prob.shape == (2,) and np.all(np.isfinite(log_prob))


def test_bad_inputs_name_the_expected_input(exported):
  _, path = exported
  model = tf.saved_model.load(path)
  with pytest.raises((ValueError, TypeError), match=r"images.*8, 8, 1|8, 8, 1.*images"):
    model.log_prob(tf.zeros([2, 8, 8, 3]))
  with pytest.raises((ValueError, TypeError), match="8, 8, 1"):
    model.log_prob(tf.zeros([8, 8, 1]))
  with pytest.raises((ValueError, TypeError), match="float32"):
    model.log_prob(tf.zeros([2, 8, 8, 1], tf.int32))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 17\)"):
    model.log_prob(tf.fill([1, 8, 8, 1], 17.5))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 17\)"):
    model.encode(tf.fill([1, 8, 8, 1], -0.5))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 17\)"):
    model.bits_per_dim(tf.fill([1, 8, 8, 1], tf.constant(20, tf.uint8)), [0, 0])
  for temperature in (float("nan"), -0.5, float("inf")):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="temperature must be a finite number >= 0"):
      model.sample(2, temperature, [0, 0])
  for value in (np.nan, np.inf):
    with pytest.raises(tf.errors.InvalidArgumentError, match="z must be finite"):
      model.decode(tf.fill([1, 8, 8, 1], value))


def _own_lines(stderr):
  """stderr without the C++ runtime's start-up lines (CUDA probing, absl init)."""
  noise = ("I0000", "W0000", "E0000", "WARNING: All log messages before absl")
  return [line for line in stderr.strip().splitlines() if not line.startswith(noise)]


def _eval(*flags):
  return subprocess.run([sys.executable, os.path.join(REPO, "eval.py"), *flags],
                        env=_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("make_dir,message", [
    (lambda p: str(p / "missing"), "no such directory"),
    (lambda p: str(p), "is not a SavedModel"),
])
def test_eval_py_rejects_bad_saved_model_dirs(tmp_path, make_dir, message):
  result = _eval(f"--saved_model={make_dir(tmp_path)}")
  assert result.returncode == 1
  assert message in result.stderr
  assert len(_own_lines(result.stderr)) == 1, result.stderr


def test_eval_py_rejects_bad_model_dir(tmp_path):
  result = _eval(f"--model_dir={tmp_path}")
  assert result.returncode == 1 and "config.json is missing" in result.stderr
  assert len(_own_lines(result.stderr)) == 1, result.stderr


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  # Trained once for the whole test run (both xdist workers read it).
  def train(model_dir):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"),
         f"--flagfile={os.path.join(REPO, 'configs', 'smoke.cfg')}",
         f"--model_dir={model_dir / 'run'}", "--train_steps=20", "--ema_decay=0.9"],
        env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
  return str(fx.shared_directory(tmp_path_factory, "export_trained_run", train) / "run")


def test_eval_py_saved_model_and_checkpoint_agree_and_repeat(trained_run, tmp_path):
  outputs = []
  for i, source in enumerate([f"--saved_model={trained_run}/export",
                              f"--saved_model={trained_run}/export",
                              f"--model_dir={trained_run}"]):
    out = tmp_path / f"eval_{i}.json"
    result = _eval(source, f"--output={out}", "--temperatures=1.0,0.7", "--manifold")
    assert result.returncode == 0, result.stderr[-3000:]
    outputs.append(json.loads(out.read_text()))
  saved_a, saved_b, checkpoint = outputs
  assert saved_a["num_images"] == 297 and saved_a["split"] == "test"
  assert saved_a["bits_per_dim"] == saved_b["bits_per_dim"]  # to the last digit
  assert abs(saved_a["bits_per_dim"] - checkpoint["bits_per_dim"]) < 1e-4
  metrics = json.loads(open(os.path.join(trained_run, "metrics.json")).read())
  assert abs(metrics["bits_per_dim"] - saved_a["bits_per_dim"]) < 1e-4
  for name in ("samples_t1.png", "samples_t0.7.png", "manifold.png"):
    image = tf.io.decode_png(tf.io.read_file(str(tmp_path / name)))
    assert image.shape[0] > 8 and image.shape[2] == 1


def test_eval_py_mixed_precision_for_checkpoints_only(trained_run, tmp_path):
  figures = {}
  for precision in ("float32", "bfloat16"):
    out = tmp_path / f"{precision}.json"
    # (S = 2 here: the importance-weighted bound through the command line; its value
    # is tested against a direct computation in test_evaluation.py.)
    result = _eval(f"--model_dir={trained_run}", f"--mixed_precision={precision}",
                   "--num_dequant_samples=2", f"--output={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    figures[precision] = json.loads(out.read_text())
    assert figures[precision]["compute_dtype"] == precision
    assert figures[precision]["num_dequant_samples"] == 2
  # bfloat16 s/t networks: another figure, close to float32's.
  difference = abs(figures["bfloat16"]["bits_per_dim"]
                   - figures["float32"]["bits_per_dim"])
  assert 0 < difference < 0.05
  refused = _eval(f"--saved_model={trained_run}/export", "--mixed_precision=bfloat16")
  assert refused.returncode == 1
  assert "--mixed_precision applies to --model_dir" in refused.stderr
  assert len(_own_lines(refused.stderr)) == 1, refused.stderr


def test_load_serves_an_export_and_a_run_directory_alike(trained_run, tmp_path):
  from_export = realnvp_tf.load(os.path.join(trained_run, "export"))
  from_run = realnvp_tf.load(trained_run)  # its selected (best/) EMA weights
  assert from_export.image_shape == from_run.image_shape == SHAPE
  x = _pixels(4, 9).numpy()
  np.testing.assert_allclose(from_run.log_prob(x), from_export.log_prob(x), rtol=1e-4)
  np.testing.assert_allclose(from_export.decode(from_export.encode(x))["values"], x,
                             rtol=1e-3, atol=1e-3)
  bits = from_export.bits_per_dim(np.floor(x).astype(np.uint8), seed=(1, 2))
  assert bits.shape == (4,) and np.all(np.isfinite(bits))
  cold = from_export.sample(3, temperature=0.0, seed=(5, 6))
  warm = from_export.sample(3, temperature=0.8, seed=(5, 6))
  assert cold["images"].dtype == np.uint8 and cold["values"].shape == (3,) + SHAPE
  np.testing.assert_allclose(cold["values"][0], cold["values"][2], rtol=1e-6)
  assert not np.allclose(warm["values"][0], warm["values"][2])
  with pytest.raises(ValueError, match="neither a SavedModel"):
    realnvp_tf.load(str(tmp_path))


def test_training_exports_the_typicality_reference_of_its_validation_images(
    trained_run):
  with open(os.path.join(trained_run, "metrics.json")) as f:
    reference = json.load(f)["typicality_reference"]
  from_export = realnvp_tf.load(os.path.join(trained_run, "export"))
  assert from_export.typicality_reference == reference
  assert realnvp_tf.load(trained_run).typicality_reference == reference
  # Recomputed here: the exported model's bits/dim of the 200 validation images.
  from realnvp_tf import data
  images = data.make_dataset("digits", "validation", batch_size=64, training=False,
                             seed=0)
  bits = np.concatenate([-from_export.log_prob(batch).numpy() / (64 * np.log(2.0))
                         for batch in images])
  assert (reference["split"] == "validation"
          and reference["num_images"] == bits.size == 200)
  assert abs(reference["mean"] - bits.mean()) < 1e-4
  assert abs(reference["std"] - bits.std(ddof=1)) < 1e-4
