"""RealNVP's invertible steps, each a `tfp.bijectors.Bijector` on [..., H, W, C] images.

TFP's direction throughout: `forward` maps latent to image (sampling), `inverse` maps
image to latent (the paper's f).
"""

from realnvp_tf.model.bijectors.batch_norm import FlowBatchNorm
from realnvp_tf.model.bijectors.class_prior import ClassPrior
from realnvp_tf.model.bijectors.coupling import AffineCoupling
from realnvp_tf.model.bijectors.coupling import network_channels
from realnvp_tf.model.bijectors.fused import FusedBijector
from realnvp_tf.model.bijectors.logit import LogitTransform
from realnvp_tf.model.bijectors.multiscale import FactorOut
from realnvp_tf.model.bijectors.multiscale import FlowChain
from realnvp_tf.model.bijectors.multiscale import RealNVPBijector
from realnvp_tf.model.bijectors.squeeze import Squeeze

__all__ = [
    "AffineCoupling", "ClassPrior", "FactorOut", "FlowBatchNorm", "FlowChain",
    "FusedBijector", "LogitTransform", "RealNVPBijector", "Squeeze", "network_channels",
]
