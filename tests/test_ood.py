"""Out-of-distribution scores, detection metrics, score.py and eval.py --ood_*."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf.data import image_folder
from realnvp_tf.data import image_inputs
from realnvp_tf.evaluation import model_images
from realnvp_tf.ood import evaluation as ood_evaluation
from realnvp_tf.ood import metrics as ood_metrics
from realnvp_tf.ood import scores as ood_scores
from realnvp_tf.ood import scoring
from realnvp_tf.runs import export

from flow_checks import perturb_variables
import reference_metrics
from trainer_fixtures import REPO
from trainer_fixtures import env
from trainer_fixtures import model_config

REFERENCE = dict(mean=3.0, std=0.5, num_images=10, split="validation")


def test_detection_metrics_of_a_small_case_by_hand():
  inside, outside = [0.1, 0.4, 0.35, 0.8], [0.9, 0.4, 0.7]
  # Pairs (out, in) with out above: 0.9 -> 4; 0.4 -> 2 + a tie (1/2); 0.7 -> 3.
  assert ood_metrics.auroc(inside, outside) == pytest.approx(9.5 / 12)
  # Thresholds 0.9, 0.8, 0.7, 0.4, ...: recall rises to 1/3, 2/3, 1 at precisions
  # 1, 2/3 and 3/5.
  assert ood_metrics.aupr(inside, outside) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
  # 95% of the OOD set is first flagged at 0.4, where 2 of 4 in-distribution are.
  assert ood_metrics.fpr_at_tpr(inside, outside) == pytest.approx(0.5)
  assert (ood_metrics.auroc([0, 1], [2, 3]) == 1.0
          and ood_metrics.auroc([2, 3], [0, 1]) == 0.0)


def test_detection_metrics_match_a_brute_force_computation_with_ties():
  rng = np.random.default_rng(0)
  inside = rng.integers(0, 20, 300).astype(float)
  outside = rng.integers(5, 30, 200).astype(float)
  labels = np.r_[np.zeros(300), np.ones(200)]
  scores = np.r_[inside, outside]
  assert ood_metrics.auroc(inside, outside) == pytest.approx(
      reference_metrics.auroc(labels, scores), abs=1e-12)
  assert ood_metrics.aupr(inside, outside) == pytest.approx(
      reference_metrics.average_precision(labels, scores), abs=1e-12)
  assert ood_metrics.fpr_at_tpr(inside, outside) == pytest.approx(
      reference_metrics.fpr_at_tpr(labels, scores))
  with pytest.raises(ValueError, match="not finite"):
    ood_metrics.auroc([0.0, np.nan], [1.0])


def test_png_code_length_is_that_of_encode_png_at_maximum_compression():
  rng = np.random.default_rng(1)
  coarse = rng.integers(0, 256, (8, 8, 1)).astype(np.float32)
  smooth = tf.cast(tf.image.resize(coarse, (64, 64)), tf.uint8).numpy()
  images = np.stack([smooth, rng.integers(0, 256, (64, 64, 1), dtype=np.uint8),
                     np.zeros((64, 64, 1), np.uint8)])
  bits = ood_scores.png_bits_per_dim(images).numpy()
  for image, value in zip(images, bits, strict=True):
    encoded = tf.io.encode_png(image, compression=9)
    assert value * 4096 / 8 == len(encoded.numpy())
    np.testing.assert_array_equal(tf.io.decode_png(encoded).numpy(), image)
  # This image's length differs at the default level (and at no compression), so
  # the comparison above would catch another level.
  for level in (-1, 0):
    assert (len(tf.io.encode_png(smooth, compression=level).numpy()) * 8 / 4096
            != bits[0])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  flow = realnvp_tf.build_realnvp(model_config())
  perturb_variables(flow, seed=5)
  path = str(tmp_path_factory.mktemp("export") / "model")
  export.export_saved_model(flow, path, metadata={"dataset": "digits",
                                                  "typicality_reference": REFERENCE})
  return path, realnvp_tf.load(path)


def _digits(count, start=0):
  from realnvp_tf import data
  images = data.make_uint8_dataset("digits", "test").skip(start).take(count)
  return np.stack(list(images.as_numpy_iterator()))


def test_ood_scores_are_bits_per_dim_png_and_their_combinations(served):
  _, model = served
  images = _digits(6)
  scores = model.ood_scores(images, seed=(3, 0))
  bits = model.bits_per_dim(images, seed=(3, 0)).numpy()
  np.testing.assert_array_equal(scores["bits_per_dim"], bits)
  # Image i's noise is its own (seed, i): one at a time gives the same figures.
  alone = [model.bits_per_dim(images[i:i + 1], seed=(3, i)).numpy()[0]
           for i in range(6)]
  np.testing.assert_array_equal(bits, alone)
  png = [8 * len(tf.io.encode_png(image, compression=9).numpy()) / 64
         for image in images]
  np.testing.assert_allclose(scores["png_bits_per_dim"], png, rtol=1e-6)
  np.testing.assert_allclose(scores["complexity_corrected"], bits - np.array(png),
                             rtol=1e-5)
  np.testing.assert_allclose(scores["typicality"], np.abs(bits - 3.0), rtol=1e-5)
  z = abs(bits.mean() - 3.0) / (0.5 / np.sqrt(6))
  np.testing.assert_allclose(scores["batch_typicality"], z, rtol=1e-5)


def _write_pngs(folder, images):
  for i, image in enumerate(images):
    path = os.path.join(folder, "sub" if i % 2 else "", f"{i:02d}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(_to_8_bits(image)))


def _from_8_bits(image):
  """The model's K = 17 levels of an 8-bit grey image (what scoring does)."""
  return np.minimum(np.floor(image.astype(np.float64) * 17 / 256), 16).astype(np.uint8)


def _to_8_bits(levels):
  """Pixels 0..16 as 8-bit grey: level k as min(16 k, 255), which the model's K = 17
  maps back to floor(16 k * 17 / 256) = k (and 255 to 16)."""
  return np.minimum(levels.astype(np.int32) * 16, 255).astype(np.uint8)


def _score(model, output, images=None, dataset=None, **kwargs):
  """What score.py does: (summary, its line) of `images` or `dataset`'s test split."""
  inputs = scoring.open_images(model, images, dataset)
  summary = scoring.score_to_file(model, inputs, output, **kwargs)
  return summary, scoring.summary_line(summary, model, inputs.description)


def test_score_of_a_folder_equals_the_saved_model_and_repeats(served, tmp_path):
  path, model = served
  images = _digits(7)
  _write_pngs(tmp_path / "imgs", images)
  (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
  rgb = np.full((16, 16, 3), 16 * 5, np.uint8)  # grey level 5, twice the size, RGB
  tf.io.write_file(str(tmp_path / "imgs" / "z_rgb.png"), tf.io.encode_png(rgb))
  outputs = []
  for batch_size, name in ((3, "a.csv"), (256, "b.csv")):
    summary, line = _score(model, str(tmp_path / name), images=str(tmp_path / "imgs"),
                           batch_size=batch_size, seed=4)
    outputs.append((tmp_path / name).read_text())
  assert outputs[0] == outputs[1]  # to the last digit, whatever the batch size
  rows = list(csv.DictReader(outputs[0].splitlines()))
  assert [os.path.relpath(r["image"], tmp_path / "imgs") for r in rows] == [
      "00.png", "02.png", "04.png", "06.png", "sub/01.png", "sub/03.png", "sub/05.png",
      "z_rgb.png"]
  assert summary["bad_files"] == [str(tmp_path / "imgs" / "broken.png")]
  assert "1 file could not be decoded (it has no row)" in line and "8 images" in line
  order = [0, 2, 4, 6, 1, 3, 5]
  expected_images = np.concatenate([images[order], np.full((1, 8, 8, 1), 5, np.uint8)])
  bits = model.bits_per_dim(expected_images, seed=(4, 0)).numpy()
  np.testing.assert_allclose([float(r["bits_per_dim"]) for r in rows], bits, atol=2e-6)
  assert list(rows[0]) == ["index", "image", "bits_per_dim", "png_bits_per_dim",
                           "complexity_corrected", "typicality"]
  # JSON lines carry the same numbers.
  _score(model, str(tmp_path / "c.jsonl"), images=str(tmp_path / "imgs" / "*.png"),
         seed=4)
  lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
  assert len(lines) == 5 and lines[0]["image"].endswith("00.png")  # glob: top level


def test_score_of_arrays_and_of_a_dataset_split(served, tmp_path):
  path, model = served
  images = _digits(5)
  np.save(tmp_path / "x.npy", _to_8_bits(images[..., 0]))  # [N, H, W]
  np.savez(tmp_path / "x.npz", first=images, second=images)
  summary, _ = _score(model, str(tmp_path / "a.csv"), images=str(tmp_path / "x.npy"))
  rows = list(csv.DictReader((tmp_path / "a.csv").read_text().splitlines()))
  assert rows[2]["image"] == "x.npy[2]"
  bits = model.bits_per_dim(images, seed=(0, 0)).numpy()
  np.testing.assert_allclose([float(r["bits_per_dim"]) for r in rows], bits, atol=2e-6)
  summary, _ = _score(model, str(tmp_path / "d.csv"), dataset="digits")
  rows = list(csv.DictReader((tmp_path / "d.csv").read_text().splitlines()))
  assert summary["num_images"] == 297 and rows[1]["image"] == "digits/test[1]"
  np.testing.assert_allclose([float(r["bits_per_dim"]) for r in rows[:5]], bits,
                             atol=2e-6)


@pytest.mark.parametrize("images, output, message", [
    ("missing_dir", "o.csv", "no such directory, file or pattern"),
    ("empty", "o.csv", "holds no image files"),
    ("nothing*.png", "o.csv", "matches no files"),
    ("bad.npy", "o.csv", "shape (4, 3)"),
    ("float.npy", "o.csv", "not integer pixels 0..255"),
    ("two.npz", "o.csv", "name one as images="),
    ("undecodable", "o.csv", "could be decoded as an image"),
    ("undecodable", "o.txt", "use a .csv or .jsonl file"),
])
def test_score_refuses_bad_input_in_one_line(served, tmp_path, images, output, message):
  _, model = served
  (tmp_path / "empty").mkdir()
  (tmp_path / "undecodable").mkdir()
  (tmp_path / "undecodable" / "a.png").write_bytes(b"garbage")
  np.save(tmp_path / "bad.npy", np.zeros((4, 3), np.uint8))
  np.save(tmp_path / "float.npy", np.full((2, 8, 8), 0.5))
  np.savez(tmp_path / "two.npz", a=np.zeros((1, 8, 8)), b=np.zeros((1, 8, 8)))
  match = message.replace("(", r"\(").replace(")", r"\)")
  if images == "undecodable":  # found while scoring
    with pytest.raises(ValueError, match=match):
      _score(model, str(tmp_path / output), images=str(tmp_path / images))
    assert not (tmp_path / output).exists()
  else:
    with pytest.raises(image_inputs.ImageInputError, match=match):
      image_inputs.open_inputs(str(tmp_path / images), (8, 8, 1), 17)


def test_score_command_line_one_line_errors_and_refusal(served, tmp_path):
  path, _ = served
  folder = tmp_path / "imgs"
  _write_pngs(folder, _digits(2))
  (folder / "broken.png").write_bytes(b"garbage")
  score = [sys.executable, os.path.join(REPO, "score.py"), f"--saved_model={path}"]
  refused = subprocess.run(score + [f"--images={folder}", "--fail_on_bad_images",
                                    f"--output={tmp_path / 'o.csv'}"],
                           env=env(), capture_output=True, text=True, timeout=300)
  assert refused.returncode == 1
  lines = [line for line in refused.stderr.splitlines() if line.strip()]
  assert (len(lines) == 1 and "broken.png" in lines[0]
          and "nothing was written" in lines[0])
  assert not (tmp_path / "o.csv").exists()
  ok = subprocess.run(score + [f"--images={folder}", f"--output={tmp_path / 'o.csv'}"],
                      env=env(), capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert ok.stdout.count("\n") == 1 and "scored 2 images" in ok.stdout
  assert "broken.png" in ok.stderr  # the warning names the file left out


def test_ood_evaluation_metrics_equal_those_of_the_scores(served):
  _, model = served
  outside = ood_evaluation.ood_inputs(model, "constant", count=40, seed=2)
  result, in_scores, out_scores = ood_evaluation.evaluate(
      model, model_images.split_inputs(model), outside, seed=2, max_images=40)
  assert result["num_in"] == result["num_ood"] == 40
  inside = model.ood_scores(_digits(40), seed=(2, 0))
  rng = np.random.default_rng([2, 1])  # synthetic_inputs' constant images
  constant = np.broadcast_to(rng.integers(0, 17, (40, 1, 1, 1)), (40, 8, 8, 1))
  outside = model.ood_scores(constant.astype(np.uint8), seed=(3, 0))
  for name in ood_scores.SCORE_NAMES:
    labels = np.r_[np.zeros(40), np.ones(40)]
    values = np.r_[inside[name], outside[name]]
    assert result["scores"][name]["auroc"] == pytest.approx(
        reference_metrics.auroc(labels, values), abs=1e-9), name
  histogram = ood_evaluation.histogram(in_scores, out_scores)
  assert histogram.shape[1] == 192 and histogram.shape[2] == 3


def _assert_rows_match(result, inside, outside):
  """Every figure of eval.py's OOD JSON against `ood.metrics` on the same scores."""
  assert result["num_in"] == len(inside["bits_per_dim"])
  assert result["num_ood"] == len(outside["bits_per_dim"])
  assert list(result["scores"]) == list(ood_scores.SCORE_NAMES)
  for name, row in result["scores"].items():
    assert row["auroc"] == pytest.approx(ood_metrics.auroc(inside[name], outside[name]),
                                         abs=1e-9), name
    assert row["aupr"] == pytest.approx(ood_metrics.aupr(inside[name], outside[name]),
                                        abs=1e-9), name
    assert row["fpr95"] == pytest.approx(
        ood_metrics.fpr_at_tpr(inside[name], outside[name]), abs=1e-9), name
    assert row["in_mean"] == pytest.approx(np.mean(inside[name]), rel=1e-6), name
    assert row["ood_mean"] == pytest.approx(np.mean(outside[name]), rel=1e-6), name


def _eval_ood(path, tmp_path, *flags):
  out = tmp_path / "eval.json"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "eval.py"), f"--saved_model={path}",
       f"--output={out}", *flags], env=env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result, json.loads(out.read_text())


def test_eval_py_ood_against_a_folder_every_figure_and_the_table(served, tmp_path):
  path, model = served
  folder = tmp_path / "ood"
  _write_pngs(folder, np.full((6, 8, 8, 1), 3, np.uint8) + np.arange(6)[:, None, None,
                                                                         None])
  (folder / "broken.png").write_bytes(b"not an image")  # left out, listed
  result, metrics = _eval_ood(path, tmp_path, f"--ood_images={folder}",
                              "--ood_max_images=40",
                              f"--ood_histogram={tmp_path / 'h.png'}")
  # The in-distribution set: the first 40 test images, seed 0; the OOD files in
  # order (sub/ after the top level), seed 1, as eval.py scores them.
  inside = model.ood_scores(_digits(40), seed=(0, 0))
  files = [p for p in image_folder.list_images(str(folder)) if p != "broken.png"]
  outside_images = np.stack([_from_8_bits(tf.io.decode_png(
      tf.io.read_file(str(folder / name))).numpy()) for name in files])
  outside = model.ood_scores(outside_images, seed=(1, 0))
  _assert_rows_match(metrics["ood"], inside, outside)
  for name, row in metrics["ood"]["scores"].items():
    assert f"{name:<22}{row['auroc']:>8.4f}" in result.stdout
  histogram = tf.io.decode_png(tf.io.read_file(str(tmp_path / "h.png"))).numpy()
  assert (histogram.shape[1] == 192
          and metrics["ood"]["histogram"] == str(tmp_path / "h.png"))
  refused = subprocess.run(
      [sys.executable, os.path.join(REPO, "eval.py"), f"--saved_model={path}",
       f"--ood_images={tmp_path / 'nowhere'}"],
      env=env(), capture_output=True, text=True, timeout=300)
  assert refused.returncode == 1
  assert [line for line in refused.stderr.splitlines() if line.strip()] == [
      f"eval.py: error: --ood_images={tmp_path / 'nowhere'}: no such directory, file "
      f"or pattern."]


def test_eval_py_ood_against_a_dataset_split(served, tmp_path):
  path, model = served
  _, metrics = _eval_ood(path, tmp_path, "--ood_dataset=digits", "--ood_split=train",
                         "--ood_max_images=30")
  inside = model.ood_scores(_digits(30), seed=(0, 0))
  from realnvp_tf import data
  train = np.stack(list(data.make_uint8_dataset("digits", "train").take(30)
                        .as_numpy_iterator()))
  outside = model.ood_scores(train, seed=(1, 0))
  _assert_rows_match(metrics["ood"], inside, outside)
  assert metrics["ood"]["ood"] == "digits/train"


def test_fpr95_counts_the_threshold_where_the_tpr_reaches_095_exactly():
  # 20 OOD scores: at threshold 10 exactly 19 are flagged, a TPR of 0.95; 2 of the
  # 5 in-distribution scores are >= 10 (one tied with an OOD score).
  outside = list(range(10, 29)) + [0.5]
  inside = [9.5, 10, 11, 0, 1]
  assert ood_metrics.fpr_at_tpr(inside, outside) == pytest.approx(2 / 5)
  # Brute force over every threshold: the highest one with TPR >= 0.95.
  thresholds = sorted(set(outside + inside), reverse=True)
  tpr = lambda t: np.mean(np.asarray(outside) >= t)  # noqa: E731
  first = next(t for t in thresholds if tpr(t) >= 0.95)
  assert first == 10 and np.mean(np.asarray(inside) >= first) == pytest.approx(0.4)


def test_a_file_that_cannot_be_read_stops_scoring_with_its_cause(served, tmp_path):
  _, model = served
  folder = tmp_path / "imgs"
  _write_pngs(folder, _digits(3))
  (folder / "broken.png").write_bytes(b"garbage")  # not an image: left out
  os.symlink(tmp_path / "gone" / "x.png", folder / "vanished.png")  # cannot be read
  inputs = scoring.open_images(model, images=str(folder))
  with pytest.raises(OSError, match="vanished.png") as error:
    scoring.score_to_file(model, inputs, str(tmp_path / "s.csv"))
  assert "decoded" not in str(error.value) and "No such file" in str(error.value)
  assert not (tmp_path / "s.csv").exists()
  os.remove(folder / "vanished.png")
  summary = scoring.score_to_file(model, scoring.open_images(model, images=str(folder)),
                                  str(tmp_path / "s.csv"))
  assert summary["bad_files"] == [str(folder / "broken.png")]


def test_an_export_from_before_ood_scores_is_refused_with_the_fix():
  import types

  from realnvp_tf.runs import loading
  old = loading.LoadedModel(types.SimpleNamespace(), {
      "model": {"image_shape": [8, 8, 1], "num_levels": 17}}, "runs/old/export")
  with pytest.raises(ValueError, match="runs/old/export was exported before the "
                     "ood_scores signature existed; re-export it"):
    old.ood_scores(np.zeros((1, 8, 8, 1), np.uint8))
