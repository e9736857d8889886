"""Training on one's own images: image folders, any tfds set, user tf.data datasets,
validation and best-model selection."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import realnvp_tf
from realnvp_tf import data
from realnvp_tf import training
from realnvp_tf.data import image_folder
from realnvp_tf.data import pipeline
from realnvp_tf.data import tfds_fetch

import tfds_mocks
import trainer_fixtures as fx

SHARED_DATA = os.environ.get("REALNVP_TF_SHARED_DATA")
needs_mnist = pytest.mark.skipif(
    not SHARED_DATA, reason="REALNVP_TF_SHARED_DATA is not set (a folder with "
    "mnist/ and fashion_mnist/ holding the official files)")


def _mnist_images(count):
  """The first `count` MNIST training images (uint8 [N, 28, 28]) and labels."""
  folder = os.path.join(SHARED_DATA, "mnist")
  with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
  with gzip.open(os.path.join(folder, "train-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
  return images[:count], labels[:count]


def _write_folder(root, images, labels):
  """PNGs and JPEGs in class subfolders, a corrupt PNG and a text file among them."""
  for i, (image, label) in enumerate(zip(images, labels, strict=True)):
    folder = root / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    encoded = (tf.io.encode_png(image[..., None]) if i % 2 else
               tf.io.encode_jpeg(image[..., None], quality=95))
    suffix = ".png" if i % 2 else ".jpg"
    (folder / f"{i:05d}{suffix}").write_bytes(encoded.numpy())
  (root / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
  (root / "notes.txt").write_text("not an image")


# ------------------------------------------------------------------ the folder


def test_decode_converts_formats_and_channels(tmp_path):
  rgb = np.random.RandomState(0).randint(0, 256, (40, 60, 3)).astype(np.uint8)
  Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
  Image.fromarray(rgb).save(tmp_path / "rgb.gif")
  Image.fromarray(np.dstack([rgb, np.full((40, 60), 9, np.uint8)])).save(
      tmp_path / "rgba.png")
  Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
  for name in ("rgb.bmp", "rgb.gif", "rgba.png", "gray.png"):
    for channels in (1, 3):
      image = image_folder.load_image(str(tmp_path / name), (20, 20), channels)
      assert image.shape == (20, 20, channels) and image.dtype == tf.uint8, name
  # Fit: 40x60 covers 20x20 at 20x30, whose centre 20 columns are kept.
  bmp = image_folder.load_image(str(tmp_path / "rgb.bmp"), (20, 20), 3).numpy()
  want = tf.image.resize(rgb.astype(np.float32), (20, 30), antialias=True)
  want = np.clip(np.round(want.numpy()[:, 5:25]), 0, 255)
  np.testing.assert_array_equal(bmp, want.astype(np.uint8))
  gray = image_folder.load_image(str(tmp_path / "gray.png"), (40, 60), 3).numpy()
  np.testing.assert_array_equal(gray, np.repeat(rgb[..., :1], 3, axis=2))


def test_the_hash_split_keeps_every_file_where_it_was(tmp_path):
  for i in range(200):
    (tmp_path / f"a{i}.png").write_bytes(b"")
  before = image_folder.find_splits(str(tmp_path), 0.2, 0.1)
  counts = {split: len(paths) for split, paths in before.items()}
  assert 20 < counts["validation"] < 60 and 5 < counts["test"] < 40
  for i in range(100):  # more files, among the old ones and in new subfolders
    (tmp_path / "0new").mkdir(exist_ok=True)
    (tmp_path / "0new" / f"b{i}.jpg").write_bytes(b"")
    (tmp_path / f"a{i}x.png").write_bytes(b"")
  after = image_folder.find_splits(str(tmp_path), 0.2, 0.1)
  for split, paths in before.items():
    assert set(paths) <= set(after[split]), split
  assert sum(len(p) for p in after.values()) == 400
  # The split of a file depends on its path relative to the folder only.
  assert image_folder.hash_fraction(os.path.join("more", "b1.jpg")) == (
      image_folder.hash_fraction("more/b1.jpg"))


def test_split_subfolders_are_used_when_train_exists(tmp_path):
  for split, count in (("train", 30), ("test", 5)):
    (tmp_path / split / "cats").mkdir(parents=True)
    for i in range(count):
      (tmp_path / split / "cats" / f"{i}.png").write_bytes(b"")
  splits = image_folder.find_splits(str(tmp_path), 0.2, 0.1)
  assert len(splits["test"]) == 5
  assert all(os.sep + "test" + os.sep in p for p in splits["test"])
  # No validation/ folder: validation is hashed out of train/, test/ kept as it is.
  assert len(splits["train"]) + len(splits["validation"]) == 30
  assert splits["validation"] and all(os.sep + "train" + os.sep in p
                                      for p in splits["validation"])


def test_a_folder_too_big_for_memory_streams_every_image_each_epoch(tmp_path,
                                                                  monkeypatch):
  # Files sorted by class folder: the stream must not keep that order, even with a
  # shuffle buffer of decoded images far smaller than the folder.
  monkeypatch.setattr(pipeline, "_STREAM_SHUFFLE_BUFFER", 4)
  for i in range(48):
    folder = tmp_path / f"class{i // 16}"
    folder.mkdir(exist_ok=True)
    tf.io.write_file(str(folder / f"{i:02d}.png"),
                     tf.io.encode_png(tf.fill([6, 6, 1], tf.constant(i, tf.uint8))))
  source = image_folder.open_folder(str(tmp_path), "6", 1, 0.0, 0.0,
                                    max_in_memory_bytes=0)
  assert source.arrays is None  # decoded from the files each epoch
  info = image_folder.describe(source)
  stream = data.make_dataset(info, "train", batch_size=8, training=True, seed=3)
  # Dequantized pixels x + u with u in [0, 1): the floor is the file's value.
  values = [int(v) for batch in stream.take(12)
            for v in np.floor(batch[:, 0, 0, 0].numpy())]
  assert sorted(values[:48]) == list(range(48)) == sorted(values[48:])
  assert values[:48] != list(range(48)) and values[:48] != values[48:]
  assert max(values[:16]) - min(values[:16]) > 24  # not one class after another


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "holds no image files"),
    (lambda p: (p / "a.png").write_bytes(b"junk"), "none of its 1 image files"),
    (lambda p: [tf.io.write_file(str(p / f"{i}.png"), tf.io.encode_png(
        tf.zeros([4, 4, 1], tf.uint8))) for i in range(3)], "fewer than one batch"),
])
def test_unusable_folders_fail_in_one_line(tmp_path, setup, message):
  folder = tmp_path / "images"
  folder.mkdir()
  setup(folder)
  result = subprocess.run(
      fx.train_cmd(tmp_path / "run", f"--image_dir={folder}", "--image_size=8",
                   "--channels=1"), env=fx.env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 1
  lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(
      ("I0000", "W0000", "E0000", "WARNING: All"))]
  assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
  assert lines[0].startswith("train.py: error: --image_dir=")
  missing = subprocess.run(
      fx.train_cmd(tmp_path / "run", f"--image_dir={tmp_path / 'nope'}",
                   "--image_size=8"), env=fx.env(), capture_output=True, text=True,
      timeout=300)
  assert missing.returncode == 1 and "no such directory" in missing.stderr


def test_bad_files_are_reported_once_or_refused(tmp_path, caplog):
  for i in range(20):
    tf.io.write_file(str(tmp_path / f"{i}.png"), tf.io.encode_png(
        tf.fill([6, 6, 1], tf.constant(i, tf.uint8))))
  (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
  source = image_folder.open_folder(str(tmp_path), 4, 1, 0.0, 0.0)
  assert len(source.files["train"]) == 20
  warnings = [r.getMessage() for r in caplog.records if "cannot be decoded" in
              r.getMessage()]
  assert (len(warnings) == 1 and "1 of 21 files" in warnings[0]
          and "bad.jpg" in warnings[0])
  with pytest.raises(image_folder.ImageFolderError, match="1 of 21 files cannot be"):
    image_folder.open_folder(str(tmp_path), 4, 1, 0.0, 0.0, fail_on_bad_images=True)


@needs_mnist
def test_train_export_and_evaluate_an_image_folder(tmp_path):
  images, labels = _mnist_images(400)
  folder = tmp_path / "digits"
  _write_folder(folder, images, labels)
  model_dir = tmp_path / "run"
  train = subprocess.run(
      fx.train_cmd(model_dir, f"--image_dir={folder}", "--image_size=28",
                   "--channels=1", "--batch_size=16", "--train_steps=4",
                   "--eval_every=2", "--eval_images=0", "--checkpoint_every=2",
                   "--batch_norm_recalibration_batches=2"),
      env=fx.env(), capture_output=True, text=True, timeout=600)
  assert train.returncode == 0, train.stderr[-3000:]
  # The corrupt file is reported once; the text file is not an image at all.
  assert train.stderr.count("cannot be decoded as images") == 1
  assert "1 of 401 files" in train.stderr and "broken.png" in train.stderr
  metrics = json.loads((model_dir / "metrics.json").read_text())
  splits = image_folder.find_splits(str(folder))
  assert metrics["num_images"] == len(splits["test"]) - (
      os.path.join(str(folder), "3", "broken.png") in splits["test"])
  assert metrics["data"]["image_dir"] == str(folder)
  # eval.py reads the export's metadata and evaluates the folder's test split.
  output = tmp_path / "eval.json"
  evaluate = subprocess.run(
      [sys.executable, os.path.join(fx.REPO, "eval.py"),
       f"--saved_model={model_dir / 'export'}", f"--output={output}"],
      env=fx.env(), capture_output=True, text=True, timeout=600)
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  evaluated = json.loads(output.read_text())
  assert evaluated["num_images"] == metrics["num_images"]
  assert abs(evaluated["bits_per_dim"] - metrics["bits_per_dim"]) < 1e-4
  # And the images are the files': the first test image, decoded here, is the
  # pipeline's first test image.
  info = data.resolve(data.DataSpec(data.IMAGE_DIR, image_dir=str(folder),
                                    image_size="28", channels=1))
  first = next(iter(data.make_uint8_dataset(info, "test"))).numpy()
  by_hand = tf.io.decode_image(tf.io.read_file(info.source.files["test"][0]),
                               channels=1).numpy()
  np.testing.assert_array_equal(first, by_hand)


# --------------------------------------------------------------- any tfds set


def test_any_tfds_image_set_by_name(monkeypatch, tmp_path):
  monkeypatch.setattr(tfds_fetch, "network_available", lambda url, timeout=0: True)
  tfds_mocks.mock_metadata(tmp_path / "meta", "svhn_cropped", train=400, test=60)
  with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path / "meta")):
    info = data.resolve("tfds:svhn_cropped")
    assert info.image_shape == (32, 32, 3) and info.num_levels == 256
    source = info.source
    assert source.tfds_name == "svhn_cropped" and source.image_key == "image"
    assert (info.num_train, info.num_validation, info.num_test) == (360, 40, 60)
    assert (source.split_name("train"), source.split_name("validation")) == (
        "train[:360]", "train[360:]")
    resized = data.resolve(data.DataSpec("tfds:svhn_cropped", image_size="16x8"))
    assert resized.image_shape == (16, 8, 3)
    batch = next(iter(data.make_dataset(resized, "train", batch_size=4)))
    assert batch.shape == (4, 16, 8, 3)
    model_config = realnvp_tf.RealNVPConfig(image_shape=(16, 8, 3), num_scales=2,
                                            num_res_blocks=1, num_filters=4)
    config = training.TrainConfig(
        dataset="tfds:svhn_cropped", image_size="16x8", batch_size=8,
        train_steps=2, eval_every=0, eval_images=8, eval_batch_size=8,
        batch_norm_recalibration_batches=1, export=False)
    metrics = training.Trainer(model_config, config, str(tmp_path),
                               strategy=fx.strategy(1)).fit(progress=False)
  assert np.isfinite(metrics["bits_per_dim"]) and metrics["step"] == 2
  with pytest.raises(ValueError, match="tensorflow-datasets has no such dataset"):
    data.resolve("tfds:no_such_set_here")


def test_a_tfds_set_offline_fails_fast(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_fetch, "network_available", lambda url, timeout=0: False)
  with pytest.raises(data.DataUnavailableError, match="cannot be reached"):
    data.resolve("tfds:svhn_cropped", data_dir=str(tmp_path))


# ------------------------------------------------------ datasets from Python


def test_trainer_takes_tf_data_datasets_of_uint8_images(tmp_path):
  rng = np.random.RandomState(3)

  def split(n):
    return tf.data.Dataset.from_tensor_slices(
        rng.randint(0, 17, (n, 8, 8, 1)).astype(np.uint8))

  info = data.from_tf_data(split(64), split(16), split(24), (8, 8, 1), num_levels=17)
  assert (info.num_train, info.num_validation, info.num_test) == (64, 16, 24)
  config = fx.train_config(dataset=data.CUSTOM, train_steps=3, eval_every=0,
                           batch_norm_recalibration_batches=1)
  metrics = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1), dataset_info=info).fit(
                                 progress=False)
  assert metrics["num_images"] == 24 and metrics["selected_step"] == 3
  with pytest.raises(ValueError, match="uint8 images of shape"):
    data.from_tf_data(split(4).map(lambda x: tf.cast(x, tf.float32)), None, split(4),
                      (8, 8, 1))


# ------------------------------------------------------ best-model selection


class _WorseningTrainer(training.Trainer):
  """Digits for the first `good_steps` steps, then one blank image over and over:
  the model forgets the digits and its validation figure worsens."""

  good_steps = 4

  def train_dataset(self, start_step):
    good = iter(super().train_dataset(start_step))
    blank = tf.zeros([self.config.batch_size, 8, 8, 1]) + 0.5
    batches = []
    for step in range(start_step, self.config.train_steps + 10):
      batches.append(fx.local_batch(self, next(good)) if step < self.good_steps
                     else blank)
    return self.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(tf.stack(batches)))


def test_best_validation_weights_are_selected_and_exported(tmp_path):
  config = fx.train_config(train_steps=10, eval_every=2, eval_images=0,
                           checkpoint_every=2, learning_rate=5e-3, export=True,
                           batch_norm_recalibration_batches=0)
  trainer = _WorseningTrainer(fx.model_config(), config, str(tmp_path),
                              strategy=fx.strategy(1))
  metrics = trainer.fit(progress=False)
  history = dict(metrics["validation_history"])
  best_step = min(history, key=history.get)
  assert sorted(history) == [2, 4, 6, 8, 10]
  assert history[10] > history[best_step] and best_step < 10  # it did worsen
  assert metrics["selected_step"] == best_step
  assert metrics["selected_validation_bits_per_dim"] == pytest.approx(
      history[best_step])
  # The export holds the best step's weights: its checkpoint (best/) scores the
  # validation images as the export does, and the last weights score them worse.
  batch = next(iter(trainer.evaluator.dataset("validation")))
  exported = tf.saved_model.load(str(tmp_path / "export"))
  best = realnvp_tf.build_realnvp(fx.model_config())
  tf.train.Checkpoint(flow=best).restore(
      tf.train.latest_checkpoint(str(tmp_path / "best"))).expect_partial()
  np.testing.assert_allclose(exported.log_prob(batch)["log_prob"],
                             best.log_prob(batch), rtol=1e-5)
  assert json.loads(exported.metadata.numpy())["step"] == best_step
  last = trainer.state.flow.log_prob(batch).numpy().mean()
  assert best.log_prob(batch).numpy().mean() > last
  # The best survives a resume; realnvp_tf.load of the run directory gives it too.
  resumed = training.Trainer(fx.model_config(), config, str(tmp_path),
                             strategy=fx.strategy(1))
  assert resumed.best.step == best_step
  resumed.close()
  np.testing.assert_allclose(realnvp_tf.load(str(tmp_path)).log_prob(batch),
                             best.log_prob(batch), rtol=1e-5)
  # select=last keeps the last weights instead.
  last_config = fx.train_config(train_steps=10, eval_every=0, select="last",
                                learning_rate=5e-3, batch_norm_recalibration_batches=0)
  last_run = _WorseningTrainer(fx.model_config(), last_config, str(tmp_path / "last"),
                               strategy=fx.strategy(1))
  assert last_run.fit(progress=False)["selected_step"] == 10


def test_a_file_that_cannot_be_read_stops_opening_a_folder_with_its_cause(tmp_path):
  # Only decoding errors may be skipped: a file that is listed but cannot be read (a
  # vanished file, a network disk failing) stops with its own cause, not "cannot be
  # decoded".
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(4):
    tf.io.write_file(str(folder / f"{i}.png"),
                     tf.io.encode_png(np.full((8, 8, 1), 40 * i, np.uint8)))
  (folder / "garbage.png").write_bytes(b"not an image")
  os.symlink(tmp_path / "gone.png", folder / "vanished.png")
  with pytest.raises(OSError, match=r"vanished.png cannot be read: .*No such file"):
    image_folder.open_folder(str(folder), (8, 8), 1, 0.0, 0.0)
  os.remove(folder / "vanished.png")
  source = image_folder.open_folder(str(folder), (8, 8), 1, 0.0, 0.0)
  assert len(source.files["train"]) == 4  # the garbage file alone is left out
  # A file that failed while the pipeline read it and decodes now is not a bad image
  # either: the failure had another cause, which passed.
  assert image_folder.undecodable([str(folder / "garbage.png")], 1) == [
      str(folder / "garbage.png")]
  with pytest.raises(OSError, match="0.png failed to load and decodes when read again"):
    image_folder.undecodable([str(folder / "0.png")], 1)
