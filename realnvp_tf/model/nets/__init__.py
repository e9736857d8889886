"""Keras 3 layers of the coupling layers' s/t networks, one concern per module:
`weight_norm` (the convolution), `batch_statistics` (cross-replica moments and
moving averages, shared with the flow's batch norm), `batch_norm` (the layer),
`recompute` (its memory-saving BN-ReLU-conv kernel), `resnet` (the network) and
`embedding` (a class-conditional network's label input)."""

from realnvp_tf.model.nets.batch_norm import BatchNorm
from realnvp_tf.model.nets.batch_statistics import ESTIMATE_STATISTICS
from realnvp_tf.model.nets.embedding import ClassEmbedding
from realnvp_tf.model.nets.resnet import CouplingResNet
from realnvp_tf.model.nets.resnet import ResidualBlock
from realnvp_tf.model.nets.weight_norm import WeightNormConv2D

__all__ = ["BatchNorm", "ClassEmbedding", "CouplingResNet", "ESTIMATE_STATISTICS",
           "ResidualBlock", "WeightNormConv2D"]
