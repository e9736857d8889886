"""RealNVP image density estimation in TensorFlow 2, Keras 3 and TFP.

Dinh, Sohl-Dickstein and Bengio, "Density estimation using Real NVP", ICLR 2017.
"""

from realnvp_tf import startup

startup.import_tensorflow_quietly()

# pylint: disable=g-import-not-at-top,wrong-import-position

from realnvp_tf.config import RealNVPConfig
from realnvp_tf.flow import bits_per_dim
from realnvp_tf.config import TrainConfig
from realnvp_tf.flow import build_realnvp
from realnvp_tf.flow import log_prob
from realnvp_tf.flow import sample
from realnvp_tf.flow import to_images
from realnvp_tf.flow import weight_scale_variables
from realnvp_tf.loading import load

__all__ = [
    "RealNVPConfig", "TrainConfig", "bits_per_dim", "build_realnvp", "load", "log_prob",
    "sample", "to_images", "weight_scale_variables",
]
