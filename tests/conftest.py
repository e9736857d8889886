"""Test session setup.

The CPU is split into two logical devices before TensorFlow initialises its runtime,
so that distribution tests can run a two-replica MirroredStrategy on a machine without
GPUs. Single-device code still runs on the first CPU device as usual.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under xdist every worker (and each process a test starts, which inherits this
# environment) gets one thread for TensorFlow's ops: the workers already keep the
# cores busy, and two pools of two threads fighting over two cores made the suite
# slower (test_export.py + test_own_images.py, -n 2: 205.6 s with TensorFlow's
# default pools, 176.8 s with one thread each).
if os.environ.get("PYTEST_XDIST_WORKER"):
  for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


import pytest  # noqa: E402

SHARED_DATA = os.environ.get("REALNVP_TF_SHARED_DATA")


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory):
  """A tfds data_dir with MNIST and Fashion-MNIST prepared from the official files
  (REALNVP_TF_SHARED_DATA), once for the whole run: the xdist workers share it (the
  first to get the lock prepares, about 15 s a set). Skips without the files' folder."""
  if not SHARED_DATA:
    pytest.skip("REALNVP_TF_SHARED_DATA is not set (a folder with mnist/ and "
                "fashion_mnist/ holding the official files)")
  from realnvp_tf import data  # pylint: disable=g-import-not-at-top
  from realnvp_tf.data import tfds_fetch  # pylint: disable=g-import-not-at-top

  import trainer_fixtures  # pylint: disable=g-import-not-at-top

  def no_network(url, timeout=0):
    raise AssertionError(f"preparing from the official files checked the network "
                         f"({url})")

  def prepare(path):
    # Fashion-MNIST first: tfds extracts manual files by their base name, which both
    # sets share, so MNIST prepared after it once got Fashion-MNIST's images
    # (test_data.py checks both sets' pixels). Offline: a network check fails.
    real_check, tfds_fetch.network_available = tfds_fetch.network_available, no_network
    try:
      for name in ("fashion_mnist", "mnist"):
        data.prepare_dataset(name, data_dir=str(path),
                             manual_dir=os.path.join(SHARED_DATA, name))
    finally:
      tfds_fetch.network_available = real_check
  return str(trainer_fixtures.shared_directory(tmp_path_factory, "prepared_tfds",
                                               prepare))


@pytest.fixture(scope="session", autouse=True)
def pretrained_cache(tmp_path_factory):
  """The shipped models' SavedModels are written here, not into the user's cache
  (processes the tests start inherit it)."""
  if not os.environ.get("REALNVP_TF_CACHE"):
    os.environ["REALNVP_TF_CACHE"] = str(tmp_path_factory.mktemp("pretrained_cache"))
  return os.environ["REALNVP_TF_CACHE"]


def pytest_collection_modifyitems(items):
  """Tests marked `long` (minutes each) run first. The two workers share the rest as
  they free up (`--dist worksteal`); a long test started near the end would keep one
  worker busy alone while the other idles."""
  items.sort(key=lambda item: item.get_closest_marker("long") is None)
