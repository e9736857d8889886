"""Input data: dequantized images in [0, K) for the flow, as tf.data pipelines.

- `registry`: the datasets (shape, K, splits, preprocessing), one entry each;
- `tfds_prep`: preparing tensorflow-datasets sets online or from the official files;
- `transforms`: per-image steps (resize, crops, flips, dequantization);
- `image_folder`: a folder of image files as a dataset;
- `specs`: which images a run means (a name, `tfds:NAME`, a folder);
- `pipeline`: `make_dataset` and friends; class labels on request (`labels=True`,
  `label_counts`, `require_labels`).
"""

from realnvp_tf.data.pipeline import label_counts
from realnvp_tf.data.pipeline import make_dataset
from realnvp_tf.data.pipeline import make_distributed_dataset
from realnvp_tf.data.pipeline import make_uint8_dataset
from realnvp_tf.data.registry import DATASET_NAMES
from realnvp_tf.data.registry import DatasetInfo
from realnvp_tf.data.registry import get_dataset_info
from realnvp_tf.data.registry import require_labels
from realnvp_tf.data.specs import CUSTOM
from realnvp_tf.data.specs import IMAGE_DIR
from realnvp_tf.data.specs import from_tf_data
from realnvp_tf.data.specs import resolve
from realnvp_tf.data.tfds_prep import DataUnavailableError
from realnvp_tf.data.tfds_prep import prepare_dataset
from realnvp_tf.data.transforms import add_noise

__all__ = [
    "DATASET_NAMES",
    "CUSTOM",
    "DataUnavailableError",
    "IMAGE_DIR",
    "DatasetInfo",
    "add_noise",
    "from_tf_data",
    "get_dataset_info",
    "label_counts",
    "make_dataset",
    "make_distributed_dataset",
    "make_uint8_dataset",
    "prepare_dataset",
    "require_labels",
    "resolve",
]
