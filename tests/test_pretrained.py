"""The models shipped in the package: each serves the figure its card states in a
process that imports only TensorFlow, round-trips and samples, matches its card's
config, fits the size limits, and tells MNIST from Fashion-MNIST as its card says;
their stored form restores the export's weights; names resolve in one line; eval.py
and score.py take --pretrained with no training."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf import data
from realnvp_tf import pretrained
from realnvp_tf.evaluation import model_images
from realnvp_tf.pretrained import storage

import trainer_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("REALNVP_TF_SHARED_DATA")
# The models this version ships (the test fails if one goes missing).
SHIPPED = ["digits", "fashion_mnist", "mnist"]
MEGABYTE = 1e6


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _data_flags(dataset, request):
  """data_dir and manual_dir of `dataset`'s official files (the prepared copy the
  run shares; real-data tests skip without REALNVP_TF_SHARED_DATA)."""
  if dataset == "digits":
    return {}
  return {"data_dir": request.getfixturevalue("prepared_data_dir"),
          "manual_dir": os.path.join(SHARED_DATA, dataset)}


def _check_images(model, count, request):
  """The card's fixed images: the first `count` of the model's test split."""
  info = model_images.data_info(model, **_data_flags(model.dataset, request))
  images = np.concatenate([b.numpy() for b in data.make_uint8_dataset(
      info, "test").batch(256).take(-(-count // 256))])
  assert len(images) >= count
  return images[:count]


def test_the_shipped_models_are_listed_and_an_unknown_name_fails_in_one_line():
  assert pretrained.names() == sorted(SHIPPED)
  with pytest.raises(ValueError) as error:
    realnvp_tf.load_pretrained("nope")
  message = str(error.value)
  assert "\n" not in message and "'nope'" in message
  assert all(name in message for name in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_tensorflow_only_process_gives_the_cards_check_figure(name, tmp_path,
                                                                request):
  card = pretrained.card(name)
  model = realnvp_tf.load_pretrained(name)
  images = _check_images(model, card["check"]["images"], request)
  np.save(tmp_path / "images.npy", images)
  script = textwrap.dedent(f"""
      import sys
      import numpy as np
      import tensorflow as tf
      m = tf.saved_model.load({pretrained.saved_model_path(name)!r})
      images = np.load({str(tmp_path / 'images.npy')!r})
      bits = m.bits_per_dim(images, {card["check"]["seed"]!r})["bits_per_dim"]
      loaded = sorted(n for n in sys.modules
                      if n.split(".")[0] in ("realnvp_tf", "tensorflow_probability"))
      assert not loaded, loaded
      print(float(np.mean(bits.numpy())))
  """)
  result = subprocess.run([sys.executable, "-c", script], env=_env(),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  figure = float(result.stdout.strip().splitlines()[-1])
  assert abs(figure - card["check"]["bits_per_dim"]) <= 1e-3, (figure, card["check"])
  # A model that learned something: far below a uniform model's log2(K).
  assert figure < 0.8 * np.log2(model.num_levels)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_round_trips_and_samples(name, request):
  model = realnvp_tf.load_pretrained(name)
  images = _check_images(model, 16, request)
  x = images.astype(np.float32) + 0.5
  decoded = model.decode(model.encode(x))["values"].numpy()
  # The pixels come back exactly; the values to float32 round-off through 3 scales of
  # couplings (Fashion-MNIST's model, trained longest, was 1.2e-3 off at 42.5: a few
  # ulps amplified by the flow's Jacobian, hence the relative term).
  np.testing.assert_array_equal(np.floor(decoded), images)
  np.testing.assert_allclose(decoded, x, rtol=1e-5, atol=1e-3)
  samples = model.sample(16, temperature=0.7, seed=(1, 2))
  assert samples["images"].shape == (16, *model.image_shape)
  assert np.all(np.isfinite(samples["values"].numpy()))
  again = model.sample(16, temperature=0.7, seed=(1, 2))["images"].numpy()
  np.testing.assert_array_equal(samples["images"].numpy(), again)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_cards_config_is_the_models_and_the_sizes_hold(name):
  card = pretrained.card(name)
  model = realnvp_tf.load_pretrained(name)
  flags = fx.flagfile_values(os.path.join(REPO, card["config"]))
  assert flags["dataset"] == model.dataset == card["dataset"]
  settings = model.metadata["model"]
  for flag in ("num_scales", "num_res_blocks", "num_filters"):
    assert int(flags[flag]) == settings[flag], flag
  assert card["commands"] and all(f"--flagfile={card['config']}" in c
                                  for c in card["commands"] if "train.py" in c)
  # What the package holds: the stored form (the SavedModel is written on first use).
  folder = pretrained.stored_path(name)
  size = sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(folder) for f in files)
  assert size == card["size_bytes"] and size <= 10 * MEGABYTE, size
  # The card's text is the card's, in the package and in docs/pretrained.md.
  with open(os.path.join(pretrained.path(name), "card.md")) as f:
    assert f.read() == pretrained.card_text(card)
  with open(os.path.join(REPO, "docs", "pretrained.md")) as f:
    assert pretrained.docs_card_text(card) in f.read()


def test_all_shipped_models_together_fit_25_megabytes():
  package = os.path.dirname(pretrained.path(SHIPPED[0]))
  total = sum(os.path.getsize(os.path.join(root, f))
              for root, _, files in os.walk(package) for f in files)
  assert total <= 25 * MEGABYTE, total


def test_eval_py_pretrained_needs_no_training_and_gives_the_cards_figure(tmp_path):
  output = tmp_path / "eval.json"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "eval.py"), "--pretrained=digits",
       f"--output={output}"], env=_env(), capture_output=True, text=True, timeout=600,
      cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(output.read_text())
  card = pretrained.card("digits")
  assert metrics["num_images"] == card["test_images"]
  assert metrics["bits_per_dim"] == pytest.approx(card["test_bits_per_dim"], abs=1e-4)


def test_score_py_pretrained_scores_a_folder_and_names_fail_in_one_line(tmp_path,
                                                                        request):
  model = realnvp_tf.load_pretrained("digits")
  folder = tmp_path / "digits"
  folder.mkdir()
  for i, image in enumerate(_check_images(model, 3, request)):
    # 8x8 pixels in 0..16, written as 8-bit PNGs the way a user's scans would be.
    scaled = np.round(image.astype(np.float32) * 255 / 16).astype(np.uint8)
    tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(scaled))
  output = tmp_path / "scores.csv"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "score.py"), "--pretrained=digits",
       f"--images={folder}", f"--output={output}"], env=_env(), capture_output=True,
      text=True, timeout=600, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = output.read_text().strip().splitlines()
  assert len(rows) == 4 and "bits_per_dim" in rows[0]
  for command, more in (("score.py", [f"--images={folder}", f"--output={output}"]),
                        ("eval.py", [])):
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, command), "--pretrained=nope", *more],
        env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr, bad.stderr[-2000:]
    lines = [line for line in bad.stderr.splitlines() if "nope" in line]
    assert len(lines) == 1 and "digits" in lines[0], bad.stderr[-2000:]
  both = subprocess.run(
      [sys.executable, os.path.join(REPO, "eval.py"), "--pretrained=digits",
       f"--saved_model={tmp_path}"], env=_env(), capture_output=True, text=True,
      timeout=300, cwd=tmp_path)
  assert both.returncode != 0 and "exactly one of" in both.stderr


def _tiny_saved_model(path):
  """A SavedModel of two float32 variables (one large enough to be rounded, one not)
  and an int64 one, with a signature that returns them."""
  module = tf.Module()
  rng = np.random.default_rng(3)
  module.large = tf.Variable(rng.normal(size=(storage.HALF_PRECISION_MIN_SIZE,)),
                             dtype=tf.float32)
  module.small = tf.Variable(rng.normal(size=(7,)) * 1e-6, dtype=tf.float32)
  module.count = tf.Variable(12345678901, dtype=tf.int64)
  module.values = tf.function(lambda: {"large": module.large.read_value(),
                                       "small": module.small.read_value(),
                                       "count": module.count.read_value()},
                              input_signature=[])
  tf.saved_model.save(module, str(path), signatures={"values": module.values})
  return {"large": module.large.numpy(), "small": module.small.numpy(),
          "count": module.count.numpy()}


def test_the_stored_form_restores_the_exports_weights_rounded_only_where_said(
    tmp_path):
  original = _tiny_saved_model(tmp_path / "export")
  rounded = storage.store(str(tmp_path / "export"), str(tmp_path / "stored"))
  assert rounded == 1
  storage.restore(str(tmp_path / "stored"), str(tmp_path / "restored"))
  restored = tf.saved_model.load(str(tmp_path / "restored"))
  values = {k: v.numpy() for k, v in restored.signatures["values"]().items()}
  # The large tensor comes back as float32 holding exactly its float16 rounding; the
  # small one and the integer unchanged, bit for bit.
  assert values["large"].dtype == np.float32
  np.testing.assert_array_equal(values["large"],
                                original["large"].astype(np.float16).astype(np.float32))
  assert not np.array_equal(values["large"], original["large"])
  np.testing.assert_array_equal(values["small"], original["small"])
  assert values["count"] == original["count"] == 12345678901
  # The graph is stored compressed, smaller than the SavedModel's.
  assert (os.path.getsize(tmp_path / "stored" / storage.GRAPH_FILE)
          < os.path.getsize(tmp_path / "export" / "saved_model.pb"))


def test_a_shipped_model_is_written_to_the_cache_once_and_a_bad_cache_fails_in_one_line(
    tmp_path, monkeypatch):
  monkeypatch.setenv(pretrained.CACHE_VARIABLE, str(tmp_path / "cache"))
  first = pretrained.saved_model_path("digits")
  assert first.startswith(str(tmp_path / "cache"))
  stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
  assert pretrained.saved_model_path("digits") == first
  assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp
  # Nothing half-written is left beside it.
  assert os.listdir(tmp_path / "cache") == [os.path.basename(first)]
  (tmp_path / "file").write_text("")
  monkeypatch.setenv(pretrained.CACHE_VARIABLE, str(tmp_path / "file" / "cache"))
  with pytest.raises(ValueError) as error:
    pretrained.saved_model_path("digits")
  message = str(error.value)
  assert "\n" not in message and pretrained.CACHE_VARIABLE in message


@pytest.mark.parametrize("name,other", [("fashion_mnist", "mnist"),
                                        ("mnist", "fashion_mnist")])
def test_the_mnist_and_fashion_models_tell_the_sets_apart_as_their_cards_say(
    name, other, tmp_path, request):
  # eval.py on the first 1,000 test images of each set; the cards hold the figures of
  # all 10,000 (eval.py --pretrained=NAME --ood_dataset=OTHER). Why the scores exist
  # (Nalisnick et al., 2019): the Fashion-MNIST model gives MNIST digits a higher
  # likelihood than its own test images, so raw bits/dim ranks them the wrong way
  # round (AUROC < 0.5), and the complexity-corrected score ranks them right.
  flags = _data_flags(name, request)
  output = tmp_path / "ood.json"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "eval.py"), f"--pretrained={name}",
       "--split=test[:1000]", f"--data_dir={flags['data_dir']}",
       f"--manual_dir={flags['manual_dir']}", f"--ood_dataset={other}",
       f"--ood_manual_dir={os.path.join(SHARED_DATA, other)}", "--ood_max_images=1000",
       f"--output={output}", "--library_logs"],
      env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  # --library_logs shows tensorflow-datasets' INFO lines, held back by default.
  assert "Load dataset info from" in result.stderr, result.stderr[-3000:]
  ood = json.loads(output.read_text())["ood"]
  assert ood["num_in"] == ood["num_ood"] == 1000
  card = pretrained.card(name)["ood"]
  assert card["num_in"] == card["num_ood"] == 10_000 and other in card["ood"]
  auroc = {score: row["auroc"] for score, row in ood["scores"].items()}
  assert set(auroc) == set(card["auroc"])
  for score, value in auroc.items():
    assert value == pytest.approx(card["auroc"][score], abs=0.03), (score, auroc, card)
  if name == "fashion_mnist":
    assert auroc["bits_per_dim"] < 0.5, auroc
    assert auroc["complexity_corrected"] > auroc["bits_per_dim"] + 0.5, auroc
