"""Tests of the data layer (issue 3). No test touches the network.

tfds datasets are tested with ``tfds.testing.mock_data``: random examples with the real
feature specs, or constructed images (``as_dataset_fn``) where a property needs known
pixels (flips, crops). The network check is replaced in every test: offline by default,
"online" only inside mock_data, where tfds's download_and_prepare is a no-op.
"""

import dataclasses
import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from realnvp_tf import data
from realnvp_tf.data import dequantization
from realnvp_tf.data import errors
from realnvp_tf.data import tfds_fetch
from realnvp_tf.data import tfds_source
from realnvp_tf.data import transforms

import raw_digits
import tfds_mocks

TFDS_NAMES = [n for n in data.DATASET_NAMES
              if isinstance(data.get_dataset_info(n).source, tfds_source.TfdsSource)]
FLIP_NAMES = [n for n in data.DATASET_NAMES if data.get_dataset_info(n).random_flips]
# The real functions, before the fixtures below replace them.
_REAL_PREREQUISITES_CHECK = tfds_fetch.check_prepare_prerequisites
_REAL_NETWORK_CHECK = tfds_fetch.network_available


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  """Every test runs "offline": a network check says no and records the URL."""
  urls = []

  def no_network(url, timeout=tfds_fetch.NETWORK_TIMEOUT_S):
    urls.append(url)
    return False

  monkeypatch.setattr(tfds_fetch, "network_available", no_network)
  return urls


def _images(ds):
  return np.concatenate([b.numpy() for b in ds], axis=0)


def _constant_images(images):
  """An as_dataset_fn that serves the given uint8 images (labels are not read)."""

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, split, decoders, read_config, shuffle_files
    return tf.data.Dataset.from_tensor_slices({"image": images})

  return as_dataset


# ----------------------------------------------------------------- names and infos


def test_dataset_names_and_infos():
  assert data.DATASET_NAMES == ("mnist", "fashion_mnist", "cifar10", "celeb_a",
                                "imagenet32", "imagenet64", "lsun_bedroom", "digits")
  expected = {
      "mnist": (28, 28, 1),
      "fashion_mnist": (28, 28, 1),
      "cifar10": (32, 32, 3),
      "celeb_a": (64, 64, 3),
      "imagenet32": (32, 32, 3),
      "imagenet64": (64, 64, 3),
      "lsun_bedroom": (64, 64, 3),
      "digits": (8, 8, 1)
  }
  for name, shape in expected.items():
    info = data.get_dataset_info(name)
    assert info.name == name and info.image_shape == shape
    assert info.num_levels == (17 if name == "digits" else 256)
    assert info.num_train > 0 and info.num_test > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
      info.num_levels = 3
  assert set(FLIP_NAMES) == {"cifar10", "celeb_a", "lsun_bedroom"}


def test_unknown_dataset_lists_known_names():
  with pytest.raises(ValueError) as err:
    data.make_dataset("cifar100")
  for name in data.DATASET_NAMES:
    assert name in str(err.value)
  with pytest.raises(ValueError, match="known datasets"):
    data.get_dataset_info("MNIST")


def test_bad_batch_size():
  with pytest.raises(ValueError, match="batch_size"):
    data.make_dataset("digits", batch_size=0)


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_manual_file_names_are_the_ones_tfds_registers(name):
  """The names in error messages are what tfds looks up in manual_dir."""
  source = data.get_dataset_info(name).source
  builder_cls = tfds.builder_cls(source.tfds_name.split("/")[0])
  registered = {ui.filename for ui in builder_cls.url_infos.values()}
  assert set(source.manual_files) <= registered
  assert len(tfds_fetch.download_urls(source)) == len(source.manual_files)


# ------------------------------------------------------------------ mocked pipelines


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_mock_pipeline_shapes_counts_and_determinism(name, monkeypatch):
  info = data.get_dataset_info(name)
  k = info.num_levels
  with tfds_mocks.mock_tfds(monkeypatch, num_examples=10, max_value=256):
    train = data.make_dataset(name, "train", batch_size=4, training=True, repeat=1)
    batches = [b.numpy() for b in train]
    assert [b.shape for b in batches] == [(4, *info.image_shape)] * 2  # 2 dropped
    for b in batches:
      assert b.dtype == np.float32 and b.min() >= 0.0 and b.max() < k

    forever = data.make_dataset(name, "train", batch_size=4, training=True)
    assert len(list(forever.take(7))) == 7  # repeats by default

    test = data.make_dataset(name, "test", batch_size=4, training=False)
    first = [b.numpy() for b in test]
    assert [len(b) for b in first] == [4, 4, 2]  # the last partial batch is kept
    again = _images(test)
    np.testing.assert_array_equal(np.concatenate(first), again)  # same noise
    assert again.dtype == np.float32 and again.min() >= 0.0 and again.max() < k
    # Evaluation adds noise in [0, 1) to the unaltered integer pixels.
    raw = np.stack(list(data.make_uint8_dataset(name, "test").as_numpy_iterator()))
    np.testing.assert_array_equal(np.floor(again), raw.astype(np.float32))
    assert 0.0 < (again - raw).mean() < 1.0

    # Noise of image i depends on (seed, i) only: not on the batch size.
    other = _images(data.make_dataset(name, "test", batch_size=3, training=False))
    np.testing.assert_array_equal(other, again)
    reseeded = _images(
        data.make_dataset(name, "test", batch_size=4, training=False, seed=1))
    assert not np.array_equal(reseeded, again)
    np.testing.assert_array_equal(np.floor(reseeded), np.floor(again))


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_mock_training_noise_differs_between_epochs(name, monkeypatch):
  info = data.get_dataset_info(name)
  with tfds_mocks.mock_tfds(monkeypatch, num_examples=1, max_value=256):
    ds = data.make_dataset(name, "train", batch_size=1, training=True, repeat=2)
    e1, e2 = [b.numpy()[0] for b in ds]
    assert e1.shape == e2.shape == info.image_shape
    noise1, noise2 = e1 - np.floor(e1), e2 - np.floor(e2)
    assert np.mean(noise1 != noise2) > 0.99
    # The training stream is reproducible from its seed.
    again = [
        b.numpy()[0]
        for b in data.make_dataset(name, "train", batch_size=1, training=True, repeat=2)
    ]
    np.testing.assert_array_equal(again[0], e1)
    np.testing.assert_array_equal(again[1], e2)


def _column_gradient(height, width, n):
  """n identical images whose channel 0 grows left to right (so flips show)."""
  col = np.round(np.linspace(0, 255, width)).astype(np.uint8)
  image = np.zeros((height, width, 3), np.uint8)
  image[..., 0] = col[None, :]
  image[..., 1] = (np.arange(height) % 256)[:, None]
  return np.repeat(image[None], n, axis=0)


def _directions(images):
  """+1 where channel 0 grows left to right, -1 where it shrinks (flipped)."""
  profile = np.floor(images[..., 0]).mean(axis=1)  # [B, W]
  steps = np.diff(profile, axis=1)
  increasing = (steps >= 0).all(axis=1) & (steps.sum(axis=1) > 0)
  decreasing = (steps <= 0).all(axis=1) & (steps.sum(axis=1) < 0)
  assert (increasing | decreasing).all()
  return np.where(increasing, 1, -1)


@pytest.mark.parametrize("name", ["cifar10", "celeb_a", "imagenet32"])
def test_flips_in_training_only_where_the_paper_uses_them(name, monkeypatch):
  info = data.get_dataset_info(name)
  source_shape = {
      "cifar10": (32, 32),
      "celeb_a": (218, 178),
      "imagenet32": (32, 32)
  }[name]
  images = _column_gradient(*source_shape, n=32)
  with tfds_mocks.mock_tfds(monkeypatch, as_dataset_fn=_constant_images(images)):
    train = _images(
        data.make_dataset(name, "train", batch_size=8, training=True, repeat=1))
    test = _images(data.make_dataset(name, "test", batch_size=8, training=False))
  assert train.shape == test.shape == (32, *info.image_shape)
  assert (_directions(test) == 1).all()  # never flipped in evaluation
  directions = _directions(train)
  if info.random_flips:
    assert 4 <= (directions == -1).sum() <= 28  # both, about half each
  else:
    assert (directions == 1).all()


def test_lsun_resize_random_crops_and_flips(monkeypatch):
  """96x160 images: channel 0 = column, channel 1 = 2 * row (the resize keeps them)."""
  n = 32
  image = np.zeros((96, 160, 3), np.uint8)
  image[..., 0] = np.arange(160)[None, :]
  image[..., 1] = 2 * np.arange(96)[:, None]
  image[..., 2] = 7
  images = np.repeat(image[None], n, axis=0)
  with tfds_mocks.mock_tfds(monkeypatch, as_dataset_fn=_constant_images(images)):
    train = np.floor(
        _images(
            data.make_dataset("lsun_bedroom",
                              "train",
                              batch_size=8,
                              training=True,
                              repeat=1)))
    test = np.floor(
        _images(data.make_dataset("lsun_bedroom", "test", batch_size=8,
                                  training=False)))
  assert train.shape == test.shape == (n, 64, 64, 3)
  # Evaluation: the centre crop, unflipped: rows 16..79, columns 48..111.
  for crop in test:
    np.testing.assert_array_equal(crop[0, :, 0], np.arange(48, 112))
    np.testing.assert_array_equal(crop[:, 0, 1], 2 * np.arange(16, 80))
  # Training: random 64x64 windows of the resized image, some mirrored.
  tops, lefts, flipped = set(), set(), 0
  for crop in train:
    cols = crop[0, :, 0]
    if cols[0] > cols[-1]:
      flipped += 1
      cols = cols[::-1]
    np.testing.assert_array_equal(cols, np.arange(cols[0], cols[0] + 64))
    rows = crop[:, 0, 1] / 2
    np.testing.assert_array_equal(rows, np.arange(rows[0], rows[0] + 64))
    assert 0 <= rows[0] <= 32 and 0 <= cols[0] <= 96
    tops.add(rows[0])
    lefts.add(cols[0])
  assert 4 <= flipped <= 28
  assert len(tops) > 5 and len(lefts) > 5


def test_lsun_smallest_side_resized_to_96():
  for h, w in [(20, 32), (300, 200), (96, 96)]:
    out = transforms.ResizeSmallestSide(96)(tf.zeros((h, w, 3), tf.uint8))
    assert min(out.shape[:2]) == 96
    assert abs(out.shape[0] / out.shape[1] - h / w) < 0.05


def test_celeba_crop_resize_keeps_integer_pixels():
  image = tf.constant(np.random.RandomState(0).randint(0, 256, (218, 178, 3)), tf.uint8)

  def celeba(im):
    return transforms.Resize((64, 64))(transforms.CentralCrop(148)(im))

  assert data.get_dataset_info("celeb_a").preprocess == (transforms.CentralCrop(148),
                                                         transforms.Resize((64, 64)))
  out = celeba(image)
  assert out.shape == (64, 64, 3) and out.dtype == tf.uint8
  constant = celeba(tf.fill((218, 178, 3), tf.constant(255, tf.uint8)))
  assert int(tf.reduce_min(constant)) == 255  # clipped, not wrapped to 0


@pytest.mark.parametrize("pixel", [255, 98, 0])
def test_dequantized_values_keep_their_integer_part(pixel):
  """255 + u rounds to 256.0 in float32 for u > 1 - 2**-17 (about 15 times in 2M)."""
  pixels = tf.fill((2_000_000,), tf.constant(pixel, tf.uint8))
  x = dequantization.dequantize(pixels, tf.constant([3, 4], tf.int64))
  assert float(tf.reduce_max(x)) < pixel + 1
  assert float(tf.reduce_min(x)) >= pixel
  np.testing.assert_array_equal(np.floor(x.numpy()), float(pixel))


# -------------------------------------------------------------------------- digits


def test_digits_counts_range_and_split():
  info = data.get_dataset_info("digits")
  assert info.num_levels == 17 and info.image_shape == (8, 8, 1)
  assert (info.num_train, info.num_validation, info.num_test) == (1300, 200, 297)
  train = _images(data.make_dataset("digits", "train", batch_size=100, training=False))
  test = _images(data.make_dataset("digits", "test", batch_size=100, training=False))
  assert train.shape == (info.num_train, 8, 8, 1) and train.dtype == np.float32
  assert test.shape == (info.num_test, 8, 8, 1)
  for x in (train, test):
    assert x.min() >= 0.0 and x.max() < 17.0
    assert np.floor(x).max() == 16.0
  # The split is a fixed permutation of the bundled set: stable and complete.
  raw_train = np.stack(list(data.make_uint8_dataset("digits", "train")))
  raw_test = np.stack(list(data.make_uint8_dataset("digits", "test")))
  np.testing.assert_array_equal(np.floor(train), raw_train)
  everything, labels = raw_digits.everything()
  # The embedded file is the UCI set: its shape, grey levels and class counts.
  assert everything.shape == (1797, 8, 8, 1) and everything.dtype == np.uint8
  assert everything.max() == 16
  np.testing.assert_array_equal(np.bincount(labels), raw_digits.CLASS_COUNTS)
  raw_validation = np.stack(list(data.make_uint8_dataset("digits", "validation")))
  ours = np.concatenate([raw_train, raw_validation, raw_test])
  key = lambda a: sorted(map(bytes, a))  # noqa: E731
  assert key(ours) == key(everything)

  batches = list(data.make_dataset("digits", "train", batch_size=64).take(30))
  assert all(b.shape == (64, 8, 8, 1) for b in batches)  # past one epoch (23 batches)
  validation = _images(data.make_dataset("digits", "validation", batch_size=100,
                                         training=False))
  assert validation.shape == (200, 8, 8, 1)
  with pytest.raises(ValueError, match="digits"):
    data.make_dataset("digits", "extra")


def test_digits_needs_no_network(offline):
  assert data.prepare_dataset("digits") is None
  next(iter(data.make_dataset("digits", batch_size=8)))
  assert offline == []  # never asked


# ----------------------------------------------------------------- distribution


def test_input_context_per_replica_batch_with_mirrored_strategy():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  assert strategy.num_replicas_in_sync == 2
  dist = data.make_distributed_dataset(strategy,
                                       "digits",
                                       "train",
                                       global_batch_size=32,
                                       training=True)
  per_replica = next(iter(dist))
  shards = strategy.experimental_local_results(per_replica)
  assert [s.shape for s in shards] == [(16, 8, 8, 1)] * 2

  # Evaluation keeps every image across replicas, partial last batches included.
  dist = data.make_distributed_dataset(strategy,
                                       "digits",
                                       "test",
                                       global_batch_size=32,
                                       training=False)
  seen = sum(
      int(s.shape[0])
      for batch in dist
      for s in strategy.experimental_local_results(batch))
  assert seen == data.get_dataset_info("digits").num_test


def test_input_context_shards_are_disjoint_and_complete():
  full = _images(data.make_dataset("digits", "test", batch_size=50, training=False))
  parts = []
  for pipeline in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=pipeline,
                                     num_replicas_in_sync=4)
    ds = data.make_dataset("digits",
                           "test",
                           batch_size=40,
                           training=False,
                           input_context=ctx)
    batches = [b.numpy() for b in ds]
    assert batches[0].shape == (10, 8, 8, 1)  # 40 global / 4 replicas
    parts.append(np.concatenate(batches))
  # Per-image noise is seeded by the global index: the shards reproduce the full set.
  key = lambda a: sorted(map(bytes, a))  # noqa: E731
  assert len(parts[0]) + len(parts[1]) == len(full)
  assert key(np.concatenate(parts)) == key(full)

  ctx = tf.distribute.InputContext(2, 0, 4)
  train = data.make_dataset("digits", "train", batch_size=40, input_context=ctx)
  assert next(iter(train)).shape == (10, 8, 8, 1)


# ------------------------------------------------------------------ offline paths


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "celeb_a"])
def test_offline_without_data_fails_fast_with_instructions(name, tmp_path, offline):
  info = data.get_dataset_info(name)
  start = time.monotonic()
  with pytest.raises(data.DataUnavailableError) as err:
    data.make_dataset(data.get_dataset_info(name, data_dir=str(tmp_path)))
  assert time.monotonic() - start < 15.0
  assert isinstance(err.value, RuntimeError)
  message = str(err.value)
  assert "manual_dir" in message and "--" not in message  # the library's argument
  for filename in info.source.manual_files:
    assert filename in message
  assert len(offline) == 1 and offline[0].startswith("http")  # checked, not fetched


def test_manual_dir_missing_files_named(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "train-images-idx3-ubyte.gz").write_bytes(b"")
  with pytest.raises(data.DataUnavailableError) as err:
    data.make_dataset(data.get_dataset_info(
        "mnist", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual)))
  message = str(err.value)
  assert "manual_dir=" in message and "t10k-labels-idx1-ubyte.gz" in message
  assert "missing train-labels-idx1-ubyte.gz" in message


def test_lsun_prerequisite_reported_before_any_download():
  try:
    import tensorflow_io  # noqa: F401
  except Exception:  # the normal case here: not installed
    with pytest.raises(data.DataUnavailableError, match="tensorflow-io"):
      _REAL_PREREQUISITES_CHECK(data.get_dataset_info("lsun_bedroom").source)
  else:
    _REAL_PREREQUISITES_CHECK(data.get_dataset_info("lsun_bedroom").source)
  _REAL_PREREQUISITES_CHECK(data.get_dataset_info("mnist").source)  # nothing needed


def test_network_check_is_quick_against_a_closed_local_port():
  """The real check, aimed at this machine only (nothing listens on port 9)."""
  start = time.monotonic()
  assert _REAL_NETWORK_CHECK("http://127.0.0.1:9/x", timeout=1.0) is False
  assert time.monotonic() - start < 3.0


# --------------------------------------------------------------- real files (CI)

SHARED_DATA = os.environ.get("REALNVP_TF_SHARED_DATA")
# Mean pixel of the official files (uint8 pixels, before noise).
REAL_STATS = {"mnist": (33.32, 33.79), "fashion_mnist": (72.94, 73.15)}


@pytest.mark.skipif(not SHARED_DATA,
                    reason="REALNVP_TF_SHARED_DATA is not set (a folder with "
                    "mnist/ and fashion_mnist/ holding the official files)")
def test_prepare_from_official_files_into_one_data_dir(prepared_data_dir, offline):
  # conftest's prepared_data_dir is data.prepare_dataset of both sets from the
  # official files into one data_dir (Fashion-MNIST first), offline; made once a run.
  for name in ["fashion_mnist", "mnist"]:
    manual_dir = os.path.join(SHARED_DATA, name)
    info = data.get_dataset_info(name)
    missing = [
        f for f in info.source.manual_files
        if not os.path.isfile(os.path.join(manual_dir, f))
    ]
    assert not missing, (
        f"REALNVP_TF_SHARED_DATA is set but {manual_dir} lacks {missing}")
  data_dir = str(prepared_data_dir)
  for name in ["fashion_mnist", "mnist"]:
    # tfds's train split is ours train + validation (its last 5,000 images).
    for splits, count, mean in [(("train", "validation"), 60_000, REAL_STATS[name][0]),
                                (("test",), 10_000, REAL_STATS[name][1])]:
      total, n = 0, 0
      for split in splits:
        raw = data.make_uint8_dataset(data.get_dataset_info(name, data_dir), split)
        for batch in raw.batch(10_000):
          total += int(tf.reduce_sum(tf.cast(batch, tf.int64)))
          n += int(batch.shape[0])
      assert n == count
      assert round(total / (n * 784), 2) == mean, (name, splits)
    # The prepared data is then reused with no network and no manual_dir.
    batch = next(
        iter(data.make_dataset(data.get_dataset_info(name, data_dir), "train",
                               batch_size=64)))
    assert batch.shape == (64, 28, 28, 1)
  assert offline == []


def test_first_line_of_an_error_is_one_line_without_tensorflow_decorations():
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    tf.io.decode_png(tf.constant(b"not a png"))
  full = raised.value.message
  line = errors.first_line(raised.value)
  assert "[Op:DecodePng]" in full and "[Op:" not in line
  assert line and "\n" not in line and line in full and not line.startswith("{{")
  assert errors.first_line(ValueError("first\nsecond")) == "first"
  assert errors.first_line(KeyError()) == "KeyError"
  assert len(errors.first_line(OSError("x" * 500))) == 200


def test_derived_seeds_of_a_run_differ_by_stream_and_by_run():
  seeds = {data.derived_seed(seed, index) for seed in range(3) for index in range(1000)}
  assert len(seeds) == 3000
  assert data.derived_seed(2, 5) == 2 * dequantization.SEED_STRIDE + 5


# ------------------------------------------------------------- the source interface


class _ArraysWithLabels(data.DataSource):
  """A source written the way a user adds one: numpy arrays per split, labels."""

  def __init__(self, arrays, labels):
    self.arrays, self.labels, self.calls = arrays, labels, []

  def images(self, split, shuffle=False, seed=0, labels=False):
    self.calls.append((split, labels))
    if labels:
      return tf.data.Dataset.from_tensor_slices((self.arrays[split],
                                                 self.labels[split]))
    return tf.data.Dataset.from_tensor_slices(self.arrays[split])

  def split_labels(self, split):
    return self.labels[split]


def test_a_new_source_is_one_class_the_pipelines_take_as_they_are():
  rng = np.random.default_rng(3)
  counts = {"train": 40, "validation": 8, "test": 12}
  arrays = {split: rng.integers(0, 5, (n, 4, 4, 1)).astype(np.uint8)
            for split, n in counts.items()}
  labels = {split: rng.integers(0, 3, n).astype(np.int32)
            for split, n in counts.items()}
  source = _ArraysWithLabels(arrays, labels)
  info = data.DatasetInfo(name="mine", image_shape=(4, 4, 1), num_levels=5,
                          num_train=40, num_validation=8, num_test=12, source=source,
                          num_classes=3, in_memory=True)
  # Evaluation: every test image in order, x + u with u in [0, 1), labels with them.
  batches = list(data.make_dataset(info, "test", batch_size=5, training=False,
                                   labels=True))
  images = np.concatenate([b[0].numpy() for b in batches])
  served = np.concatenate([b[1].numpy() for b in batches])
  np.testing.assert_array_equal(np.floor(images).astype(np.uint8), arrays["test"])
  np.testing.assert_array_equal(served, labels["test"])
  # Training: shuffled batches of the training images, each label still its image's.
  table = {image.tobytes(): int(label)
           for image, label in zip(arrays["train"], labels["train"], strict=True)}
  for batch, batch_labels in data.make_dataset(info, "train", batch_size=8, seed=1,
                                               labels=True).take(10):
    for image, label in zip(np.floor(batch.numpy()).astype(np.uint8), batch_labels,
                            strict=True):
      assert table[image.tobytes()] == int(label)
  np.testing.assert_array_equal(data.label_counts(info, "validation"),
                                np.bincount(labels["validation"], minlength=3))
  assert ("test", True) in source.calls and ("train", True) in source.calls
  # The fingerprint a run records: the split sizes and what the base class adds.
  assert data.fingerprint(info)["splits"] == {
      "train": ["train", 40], "validation": ["validation", 8], "test": ["test", 12]}
  assert data.fingerprint(info)["tfds_name"] is None
  # A source that implements neither method is refused when it is made.
  with pytest.raises(TypeError):
    type("Incomplete", (data.DataSource,), {})()


def test_fingerprints_of_registered_sets_are_the_ones_earlier_versions_recorded():
  # Recorded by the version before data sources were objects (commit 2f6b207): a run
  # of that version resumes without being told its data changed.
  assert data.fingerprint(data.get_dataset_info("mnist")) == {
      "class_names": list("0123456789"), "image_shape": [28, 28, 1], "name": "mnist",
      "num_classes": 10, "num_levels": 256, "tfds_name": "mnist",
      "splits": {"test": ["test", 10000], "train": ["train[:55000]", 55000],
                 "validation": ["train[55000:]", 5000]}}
  assert data.fingerprint(data.get_dataset_info("digits"))["splits"] == {
      "test": ["test", 297], "train": ["train", 1300],
      "validation": ["validation", 200]}


def test_data_spec_is_checked_when_made_and_round_trips_through_its_record():
  with pytest.raises(ValueError) as folder_without_name:
    data.DataSpec("mnist", image_dir="/some/folder", image_size="8")
  assert "\n" not in str(folder_without_name.value)
  assert "dataset='image_dir'" in str(folder_without_name.value)
  with pytest.raises(ValueError, match="image_size"):
    data.DataSpec(data.IMAGE_DIR, image_dir="/some/folder")
  with pytest.raises(ValueError, match="known datasets"):
    data.DataSpec("no_such_set")
  spec = data.DataSpec(data.IMAGE_DIR, image_dir="/some/folder", image_size=[8, 6],
                       channels=1, test_fraction=0.2)
  assert spec.image_size == (8, 6)  # a JSON list: hashable again, for the cache
  assert data.DataSpec.from_dict(spec.as_dict()) == spec
  # Records without a key take the defaults (older runs recorded fewer).
  assert data.DataSpec.from_dict({"dataset": "digits", "image_dir": None}) == (
      data.DataSpec("digits"))
  # A registered set located elsewhere reads its files from there.
  located = data.get_dataset_info("mnist", data_dir="/tmp/x", manual_dir="/tmp/y")
  assert (located.source.data_dir, located.source.manual_dir) == ("/tmp/x", "/tmp/y")
  assert data.get_dataset_info("mnist").source.data_dir is None
