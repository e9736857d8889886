"""Input data: dequantized images in [0, K) for the flow, as tf.data pipelines.

- `registry`: the datasets (shape, K, splits, preprocessing), one entry each;
- `sources`: which images a run means (a registered name, `tfds:NAME`, a folder, or
  the user's tf.data datasets);
- `tfds_fetch`, `tfds_read`, `tfds_describe`: preparing tensorflow-datasets sets
  (online, or offline from the official files), reading them, and describing any tfds
  image set;
- `image_folder`: a folder of image files as a dataset;
- `image_inputs`: images to score (a folder, a glob, an array, a dataset split);
- `transforms`, `dequantization`: per-image steps; x + u;
- `pipeline`: `make_dataset` and friends; class labels on request (`labels=True`,
  `label_counts`, `require_labels`).

Imports no model code (see docs/architecture.md).
"""

from realnvp_tf.data.dequantization import derived_seed
from realnvp_tf.data.pipeline import label_counts
from realnvp_tf.data.pipeline import make_dataset
from realnvp_tf.data.pipeline import make_distributed_dataset
from realnvp_tf.data.pipeline import make_uint8_dataset
from realnvp_tf.data.registry import DATASET_NAMES
from realnvp_tf.data.registry import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info
from realnvp_tf.data.registry import require_image_format
from realnvp_tf.data.registry import require_labels
from realnvp_tf.data.sources import CUSTOM
from realnvp_tf.data.sources import DATA_SPEC_FIELDS
from realnvp_tf.data.sources import IMAGE_DIR
from realnvp_tf.data.sources import fingerprint
from realnvp_tf.data.sources import from_tf_data
from realnvp_tf.data.sources import resolve
from realnvp_tf.data.tfds_describe import is_tfds_name
from realnvp_tf.data.tfds_fetch import DataUnavailableError
from realnvp_tf.data.tfds_fetch import prepare_dataset

__all__ = [
    "CUSTOM",
    "DATASET_NAMES",
    "DATA_SPEC_FIELDS",
    "DataUnavailableError",
    "DatasetInfo",
    "IMAGE_DIR",
    "derived_seed",
    "fingerprint",
    "from_tf_data",
    "get_dataset_info",
    "is_tfds_name",
    "label_counts",
    "make_dataset",
    "make_distributed_dataset",
    "make_uint8_dataset",
    "prepare_dataset",
    "require_image_format",
    "require_labels",
    "resolve",
]
