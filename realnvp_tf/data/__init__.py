"""Input data: dequantized images in [0, K) for the flow, as tf.data pipelines.

- `dataset_info`: `DatasetInfo` (what a dataset is) and `DataSource` (the interface
  of where its images come from);
- the sources: `tfds_source` (a tensorflow-datasets set), `array_source` (numpy
  arrays: digits), `image_folder` (a folder of image files), `tf_data_source` (the
  user's tf.data datasets, `from_tf_data`);
- `registry`: the datasets this package knows, one entry each;
- `data_spec`: which images a run means (`DataSpec`), `resolve`d to a `DatasetInfo`,
  and the `fingerprint` a run records;
- `tfds_fetch`, `tfds_describe`: preparing tensorflow-datasets sets (online, or
  offline from the official files) and describing any tfds image set;
- `image_inputs`: images to score (a folder, a glob, an array, a dataset split);
- `transforms`, `dequantization`: per-image steps; x + u;
- `pipeline`: `make_dataset` and friends; class labels on request (`labels=True`,
  `label_counts`, `require_labels`).

Imports no model code (see docs/architecture.md).
"""

from realnvp_tf.data.data_spec import IMAGE_DIR
from realnvp_tf.data.data_spec import DataSpec
from realnvp_tf.data.data_spec import fingerprint
from realnvp_tf.data.data_spec import resolve
from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.dataset_info import DataSource
from realnvp_tf.data.dequantization import derived_seed
from realnvp_tf.data.pipeline import label_counts
from realnvp_tf.data.pipeline import make_dataset
from realnvp_tf.data.pipeline import make_distributed_dataset
from realnvp_tf.data.pipeline import make_uint8_dataset
from realnvp_tf.data.pipeline import prepare_dataset
from realnvp_tf.data.registry import DATASET_NAMES
from realnvp_tf.data.registry import get_dataset_info
from realnvp_tf.data.registry import require_image_format
from realnvp_tf.data.registry import require_labels
from realnvp_tf.data.tf_data_source import CUSTOM
from realnvp_tf.data.tf_data_source import from_tf_data
from realnvp_tf.data.tfds_describe import is_tfds_name
from realnvp_tf.data.tfds_fetch import DataUnavailableError

__all__ = [
    "CUSTOM",
    "DATASET_NAMES",
    "DataSource",
    "DataSpec",
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
