"""Class labels through the data layer (for a class-conditional model). No test
touches the network: digits, images the tests write, tfds.testing.mock_data, and the
official MNIST files where REALNVP_TF_SHARED_DATA points at them.

The expected labels are computed here independently of the package (scikit-learn's
targets under the split permutation, the IDX label file, labels that are a function
of the pixels), so each check fails when a label drifts from its image.
"""

import dataclasses
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from realnvp_tf import data
from realnvp_tf.data import image_folder
from realnvp_tf.data import tfds_describe
from realnvp_tf.data import tfds_fetch
from realnvp_tf.data import tfds_source

import raw_digits
import tfds_mocks

SHARED_DATA = os.environ.get("REALNVP_TF_SHARED_DATA")
LABELLED = ("mnist", "fashion_mnist", "cifar10", "imagenet32", "imagenet64", "digits")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  """Every test runs "offline"; mock_data runs "online", where tfds does nothing."""
  monkeypatch.setattr(tfds_fetch, "network_available", lambda url, timeout=0: False)


def _pairs(ds):
  """(images, labels) of a dataset of (image(s), label(s)) elements, concatenated."""
  images, labels = [], []
  for image, label in ds:
    images.append(np.asarray(image).reshape((-1,) + tuple(image.shape[-3:])))
    labels.append(np.asarray(label).reshape(-1))
  return np.concatenate(images), np.concatenate(labels)


def _one_line_error(error, *words):
  message = str(error.value)
  assert "\n" not in message, message
  for word in words:
    assert word in message, message
  return message


# ------------------------------------------------------------------------ registry


def test_registry_classes_match_tfds_features():
  for name in data.DATASET_NAMES:
    info = data.get_dataset_info(name)
    assert info.num_classes == (1000 if "imagenet" in name else
                                10 if name in LABELLED else 0), name
    assert not info.class_names or len(info.class_names) == info.num_classes
    if not isinstance(info.source, tfds_source.TfdsSource):
      continue
    source = info.source
    features = tfds.builder(source.tfds_name, data_dir="/nonexistent").info.features
    if info.num_classes:
      assert isinstance(features[source.label_key], tfds.features.ClassLabel)
      assert features[source.label_key].num_classes == info.num_classes
    else:
      assert not any(isinstance(f, tfds.features.ClassLabel) and k == "label"
                     for k, f in features.items())
  assert data.get_dataset_info("mnist").class_names == tuple("0123456789")
  assert data.get_dataset_info("fashion_mnist").class_names[::9] == ("T-shirt/top",
                                                                      "Ankle boot")
  assert data.get_dataset_info("cifar10").class_names[:2] == ("airplane", "automobile")
  assert data.get_dataset_info("cifar10").class_names[-1] == "truck"


def test_asking_labels_of_an_unlabelled_set_is_one_line_everywhere():
  info = data.get_dataset_info("celeb_a")
  calls = [lambda: data.require_labels(info),
           lambda: data.make_dataset("celeb_a", labels=True),
           lambda: data.make_uint8_dataset("celeb_a", labels=True),
           lambda: data.label_counts("celeb_a"),
           lambda: data.make_distributed_dataset(tf.distribute.get_strategy(),
                                                 "lsun_bedroom", labels=True)]
  messages = []
  for call in calls:
    with pytest.raises(ValueError) as err:
      call()
    messages.append(_one_line_error(err, "has no class labels", *LABELLED,
                                    "tfds:NAME", "one subfolder per class"))
  assert messages[0].startswith("celeb_a has no class labels; a class-conditional")
  assert messages[-1].startswith("lsun_bedroom has no class labels")
  data.require_labels(data.get_dataset_info("digits"))  # passes


# -------------------------------------------------------------------------- digits


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_digits_labels_are_the_files_labels_in_the_split_order(split):
  images, labels = _pairs(data.make_uint8_dataset("digits", split, labels=True))
  want_images, want_labels = raw_digits.split(split)
  np.testing.assert_array_equal(images, want_images)
  np.testing.assert_array_equal(labels, want_labels)
  np.testing.assert_array_equal(
      data.label_counts("digits", split), np.bincount(want_labels, minlength=10))
  assert data.label_counts("digits", split).dtype == np.int64


def _label_of_image(split):
  """{image bytes: set of labels} of a digits split (a few images repeat)."""
  table = {}
  for image, label in zip(*raw_digits.split(split), strict=True):
    table.setdefault(image.tobytes(), set()).add(int(label))
  return table


def test_labelled_pipelines_serve_the_unlabelled_images():
  info = data.get_dataset_info("digits")
  # Training: 30 batches of 64 run past one epoch (20 batches) into the reshuffle.
  plain = list(data.make_dataset("digits", "train", batch_size=64, seed=5).take(30))
  labelled = list(data.make_dataset("digits", "train", batch_size=64, seed=5,
                                    labels=True).take(30))
  table = _label_of_image("train")
  for image_batch, (images, labels) in zip(plain, labelled, strict=True):
    np.testing.assert_array_equal(image_batch.numpy(), images.numpy())
    assert labels.dtype == tf.int32 and labels.shape == (64,)
    pixels = np.floor(images.numpy()).astype(np.uint8)
    for image, label in zip(pixels, labels.numpy(), strict=True):
      assert int(label) in table[image.tobytes()]  # the label followed its image
  # Evaluation: every image, the partial last batch too.
  plain = np.concatenate([b.numpy() for b in data.make_dataset(
      "digits", "test", batch_size=100, training=False)])
  images, labels = _pairs(data.make_dataset("digits", "test", batch_size=100,
                                            training=False, labels=True))
  np.testing.assert_array_equal(plain, images)
  np.testing.assert_array_equal(labels, raw_digits.split("test")[1])
  assert images.shape[0] == info.num_test and labels.dtype == np.int32


def test_labels_across_replicas():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  dist = data.make_distributed_dataset(strategy, "digits", "test",
                                       global_batch_size=32, training=False,
                                       labels=True)
  images, labels = [], []
  for batch_images, batch_labels in dist:
    images += [s.numpy() for s in strategy.experimental_local_results(batch_images)]
    labels += [s.numpy() for s in strategy.experimental_local_results(batch_labels)]
  images, labels = np.concatenate(images), np.concatenate(labels)
  table = _label_of_image("test")
  assert len(labels) == 297
  for image, label in zip(np.floor(images).astype(np.uint8), labels, strict=True):
    assert int(label) in table[image.tobytes()]


# ------------------------------------------------------ datasets from Python


def _valued(values, size=8):
  """Images whose every pixel is the value: crops and flips keep it readable."""
  return np.repeat(np.asarray(values, np.uint8)[:, None, None, None], size,
                   axis=1).repeat(size, axis=2)


def _labelled_split(values, num_classes, dtype=tf.int64):
  images = _valued(values)
  labels = tf.constant(np.asarray(values) % num_classes, dtype)
  return tf.data.Dataset.from_tensor_slices((images, labels))


def test_labels_follow_images_through_shuffles_crops_and_flips():
  train = _labelled_split(range(40), 5)
  info = data.from_tf_data(train, None, _labelled_split(range(40, 47), 5), (8, 8, 1),
                           num_classes=5, class_names="abcde")
  assert (info.num_classes, info.class_names) == (5, tuple("abcde"))
  augmented = dataclasses.replace(info, random_flips=True, crop=(6, 6))
  for source in (info, augmented):
    ds = data.make_dataset(source, "train", batch_size=8, seed=2, labels=True,
                           repeat=2)
    images, labels = _pairs(ds)
    values = np.floor(images[:, 0, 0, 0]).astype(int)
    np.testing.assert_array_equal(labels, values % 5)
    assert sorted(values[:40]) == list(range(40)) and list(values[:40]) != list(
        range(40))  # shuffled, every image once per epoch
    plain = np.concatenate([b.numpy() for b in data.make_dataset(
        source, "train", batch_size=8, seed=2, repeat=2)])
    np.testing.assert_array_equal(plain, images)
  assert images.shape[1:] == (6, 6, 1)
  np.testing.assert_array_equal(data.label_counts(info), [8] * 5)
  np.testing.assert_array_equal(data.label_counts(info, "test"), [2, 2, 1, 1, 1])
  # Without labels the pairs serve their images alone.
  first = next(iter(data.make_uint8_dataset(info, "test")))
  assert first.shape == (8, 8, 1)


def test_from_tf_data_refuses_elements_that_do_not_match_num_classes():
  pairs = _labelled_split(range(4), 2)
  images = tf.data.Dataset.from_tensor_slices(_valued(range(4)))
  cases = [((pairs, None, pairs), {}, "pairs but num_classes is 0"),
           ((images, None, images), {"num_classes": 3}, "images only but num_classes"),
           ((pairs, None, images), {"num_classes": 2},
            "test dataset holds images only"),
           ((pairs.map(lambda x, y: (x, tf.cast(y, tf.float32))), None, pairs),
            {"num_classes": 2}, "integer scalar label"),
           ((pairs, None, pairs), {"num_classes": 2, "class_names": ("a",)},
            "one name per class")]
  for args, kwargs, words in cases:
    with pytest.raises(ValueError) as err:
      data.from_tf_data(*args, (8, 8, 1), **kwargs)
    _one_line_error(err, words)


@pytest.mark.parametrize("bad", [5, -1])
def test_out_of_range_labels_raise_when_read(bad):
  values = [0, 1, 2, 3]
  images = _valued(values)
  labels = tf.constant([0, 1, bad, 3], tf.int32)
  split = tf.data.Dataset.from_tensor_slices((images, labels))
  info = data.from_tf_data(split, None, split, (8, 8, 1), num_classes=5)
  for make in (lambda: data.make_dataset(info, "train", batch_size=2, labels=True,
                                         repeat=1),
               lambda: data.make_dataset(info, "test", batch_size=2, training=False,
                                         labels=True)):
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside \\[0, 5\\)"):
      list(make())
  with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
    data.label_counts(info)
  assert len(list(data.make_dataset(info, "train", batch_size=2, repeat=1))) == 2


# ----------------------------------------------------------------- image folders


def _write_png(path, value, size=6):
  path.parent.mkdir(parents=True, exist_ok=True)
  tf.io.write_file(str(path), tf.io.encode_png(
      tf.fill([size, size, 1], tf.constant(value, tf.uint8))))


# Class folder -> the pixel values of its images (sorted names: b_cat, c_owl, dog).
CLASSES = {"dog": range(0, 60, 3), "b_cat": range(1, 60, 3), "c_owl": range(2, 60, 3)}
SORTED = ("b_cat", "c_owl", "dog")


def _class_folder(root, split_folder=""):
  for name, values in CLASSES.items():
    for value in values:
      _write_png(root / split_folder / name / f"{value:03d}.png", value)


def _expected_label(value):
  return SORTED.index([n for n, v in CLASSES.items() if value in v][0])


def _check_folder_labels(info, splits):
  total = np.zeros(3, np.int64)
  for split in splits:
    images, labels = _pairs(data.make_uint8_dataset(info, split, labels=True))
    want = [_expected_label(v) for v in images[:, 0, 0, 0]]
    np.testing.assert_array_equal(labels, want)
    counts = data.label_counts(info, split)
    np.testing.assert_array_equal(counts, np.bincount(want, minlength=3))
    total += counts
  return total


@pytest.mark.parametrize("max_bytes", [image_folder.IN_MEMORY_BYTES, 0])
def test_class_subfolders_label_a_hashed_folder(tmp_path, max_bytes):
  _class_folder(tmp_path)
  (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
  source = image_folder.open_folder(str(tmp_path), "6", 1, 0.2, 0.2,
                                    max_in_memory_bytes=max_bytes)
  assert (source.arrays is None) == (max_bytes == 0)
  info = image_folder.describe(source)
  assert info.num_classes == 3 and info.class_names == SORTED
  total = _check_folder_labels(info, ("train", "validation", "test"))
  np.testing.assert_array_equal(total, [20, 20, 20])  # the broken file is left out
  # Training (streaming: file paths shuffled with their labels) keeps them paired
  # and serves the unlabelled pipeline's images.
  ds = data.make_dataset(info, "train", batch_size=4, seed=1, labels=True, repeat=2)
  images, labels = _pairs(ds)
  values = np.floor(images[:, 0, 0, 0]).astype(np.uint8)
  np.testing.assert_array_equal(labels, [_expected_label(v) for v in values])
  plain = np.concatenate([b.numpy() for b in data.make_dataset(
      info, "train", batch_size=4, seed=1, repeat=2)])
  np.testing.assert_array_equal(plain, images)


def test_class_subfolders_under_split_folders(tmp_path):
  _class_folder(tmp_path, "train")
  for name, values in CLASSES.items():
    for value in values[:2]:
      _write_png(tmp_path / "test" / name / f"t{value:03d}.png", value)
  source = image_folder.open_folder(str(tmp_path), "6", 1, 0.2, 0.0,
                                    max_in_memory_bytes=0)
  info = image_folder.describe(source)
  assert info.class_names == SORTED
  assert info.num_test == 6 and info.num_validation > 0
  np.testing.assert_array_equal(
      _check_folder_labels(info, ("train", "validation")), [20, 20, 20])
  np.testing.assert_array_equal(_check_folder_labels(info, ("test",)), [2, 2, 2])


def test_a_test_class_missing_from_train_fails_only_when_labels_are_asked(tmp_path):
  _class_folder(tmp_path, "train")
  _write_png(tmp_path / "test" / "dog" / "a.png", 0)
  _write_png(tmp_path / "test" / "zebra" / "z.png", 7)
  info = data.resolve(data.DataSpec(data.IMAGE_DIR, image_dir=str(tmp_path),
                                    image_size="6", channels=1))
  assert info.num_classes == 3
  assert len(list(data.make_uint8_dataset(info, "test"))) == 2  # unconditional: fine
  for call in (lambda: data.make_dataset(info, "train", labels=True),
               lambda: data.label_counts(info)):
    with pytest.raises(image_folder.ImageFolderError) as err:
      call()
    _one_line_error(err, str(tmp_path), "test/zebra/", "train/")


@pytest.mark.parametrize("layout,reason", [
    ({"dog/a.png": 1, "cat/b.png": 2, "loose.png": 3}, "1 of 3 images sit outside"),
    ({"dog/a.png": 1, "dog/b.png": 2}, "only the class folder dog"),
    ({"a.png": 1, "b.png": 2}, "2 of 2 images sit outside"),
    ({"train/dog/a.png": 1, "train/cat/b.png": 2, "test/c.png": 3}, "e.g. test/c.png"),
])
def test_folders_without_usable_classes_train_unconditionally(tmp_path, layout,
                                                              reason):
  for relative, value in layout.items():
    _write_png(tmp_path / relative, value)
  source = image_folder.open_folder(str(tmp_path), "6", 1, 0.0, 0.0)
  info = image_folder.describe(source)
  assert info.num_classes == 0 and info.class_names == ()
  assert next(iter(data.make_dataset(info, "train", batch_size=1))).shape == (
      1, 6, 6, 1)
  with pytest.raises(ValueError) as err:
    data.make_dataset(info, "train", batch_size=1, labels=True)
  _one_line_error(err, "image_dir has no class labels", reason, str(tmp_path),
                  "one subfolder per class")
  with pytest.raises(ValueError, match="no class labels"):
    source.images("train", labels=True)


# --------------------------------------------------------------------- tfds sets


def test_the_class_label_feature_of_a_tfds_set():
  features = tfds.features
  image = features.Image(shape=(8, 8, 3))
  coarse, fine = features.ClassLabel(names=["a", "b"]), features.ClassLabel(
      num_classes=7)
  pick = lambda **f: tfds_describe._label_fields(features.FeaturesDict(f))  # noqa: E731
  assert pick(image=image, coarse_label=coarse, label=fine) == {
      "num_classes": 7, "class_names": tuple("0123456"), "label_key": "label"}
  assert pick(image=image, kind=coarse) == {
      "num_classes": 2, "class_names": ("a", "b"), "label_key": "kind"}
  assert pick(image=image, coarse=coarse, fine=fine) == {}
  assert pick(image=image, label=features.Text()) == {}


def test_a_tfds_set_by_name_serves_its_class_labels(monkeypatch, tmp_path):
  tfds_mocks.mock_metadata(tmp_path, "mnist", train=200, test=30)
  with tfds_mocks.mock_tfds(monkeypatch, num_examples=30, data_dir=str(tmp_path)):
    info = data.resolve("tfds:mnist")
    assert (info.num_classes, info.source.label_key) == (10, "label")
    assert info.class_names == tuple("0123456789")
    images, labels = _pairs(data.make_dataset(info, "test", batch_size=8,
                                              training=False, labels=True))
    plain = np.concatenate([b.numpy() for b in data.make_dataset(
        info, "test", batch_size=8, training=False)])
    np.testing.assert_array_equal(images, plain)
    assert labels.dtype == np.int32 and len(labels) == 30
    assert 0 <= labels.min() and labels.max() < 10 and len(set(labels)) > 3
    counts = data.label_counts(info, "test")
    assert counts.shape == (10,) and counts.sum() == 30


def test_labels_follow_tfds_images_through_flips(monkeypatch):
  values = np.arange(32)
  images = np.repeat(_valued(values, 32), 3, axis=3)
  images[:, :, :16, 1] = 255  # left half marked: a flip shows
  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, split, decoders, read_config, shuffle_files
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": tf.constant(values % 10, tf.int64)})
  with tfds_mocks.mock_tfds(monkeypatch, as_dataset_fn=as_dataset):
    ds = data.make_dataset("cifar10", "train", batch_size=8, labels=True, repeat=1)
    got, labels = _pairs(ds)
  np.testing.assert_array_equal(labels, np.floor(got[:, 0, 20, 0]) % 10)
  flipped = np.floor(got[:, 0, 0, 1]) != 255
  assert 4 <= flipped.sum() <= 28 and labels.dtype == np.int32


# ------------------------------------------------------------ the real MNIST files


@pytest.fixture
def mnist_dir(prepared_data_dir):
  """MNIST prepared by tfds from the official files (once for the run)."""
  return prepared_data_dir


def _idx(name, offset, shape):
  with gzip.open(os.path.join(SHARED_DATA, "mnist", name)) as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)


def test_mnist_labels_are_the_idx_files_labels(mnist_dir):
  want_labels = _idx("t10k-labels-idx1-ubyte.gz", 8, (-1,))
  want_images = _idx("t10k-images-idx3-ubyte.gz", 16, (-1, 28, 28))
  table = {}
  for image, label in zip(want_images, want_labels, strict=True):
    table.setdefault(image.tobytes(), set()).add(int(label))
  mnist = data.get_dataset_info("mnist", data_dir=mnist_dir)
  ds = data.make_uint8_dataset(mnist, "test", labels=True)
  images, labels = _pairs(ds.batch(2_500))
  assert len(labels) == 10_000 and labels.dtype == np.int32
  # tfds stores the examples in its own order: each image keeps its file label.
  assert all(int(label) in table[image.tobytes()]
             for image, label in zip(images[..., 0], labels, strict=True))
  counts = data.label_counts(mnist, "test")
  np.testing.assert_array_equal(counts, np.bincount(want_labels, minlength=10))
  train = _idx("train-labels-idx1-ubyte.gz", 8, (-1,))
  both = sum(data.label_counts(mnist, split)
             for split in ("train", "validation"))
  np.testing.assert_array_equal(both, np.bincount(train, minlength=10))
