"""The flow: `RealNVPConfig`, its bijectors and s/t networks, and their assembly into a
`tfp.distributions.TransformedDistribution` (`build_realnvp`).

Imports nothing else of realnvp_tf (see docs/architecture.md).
"""

from realnvp_tf.model.config import RealNVPConfig
from realnvp_tf.model.flow import bits_per_dim
from realnvp_tf.model.flow import build_realnvp
from realnvp_tf.model.flow import log_prob
from realnvp_tf.model.flow import sample
from realnvp_tf.model.flow import to_images
from realnvp_tf.model.flow import weight_scale_variables

__all__ = ["RealNVPConfig", "bits_per_dim", "build_realnvp", "log_prob", "sample",
           "to_images", "weight_scale_variables"]
