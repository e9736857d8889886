"""Batch statistics shared by every batch norm (the s/t networks' and the flow's).

Under a distribution strategy the statistics are those of the global batch, so that the
moving averages stay equal on every replica.
"""

import tensorflow as tf

# Every batch norm's defaults (the flow's and the s/t networks'; RealNVPConfig's
# batch_norm_momentum and batch_norm_epsilon): the moving averages keep this share
# of their value at each training step, and epsilon is added to the variance.
MOMENTUM = 0.9
EPSILON = 1e-4


def batch_moments(x):
  """Per-channel mean and (biased) variance of a [B, H, W, C] batch, over all replicas.

  Under a distribution strategy every replica gets the statistics of the global batch
  (as one device would), so moving averages stay identical on all replicas. Assumes
  equal per-replica batches (drop_remainder in training).
  """
  axes = [0, 1, 2]
  mean = tf.reduce_mean(x, axis=axes)
  if single_replica():
    return mean, tf.reduce_mean(tf.square(x - mean), axis=axes)
  context = tf.distribute.get_replica_context()
  mean = context.all_reduce(tf.distribute.ReduceOp.MEAN, mean)
  variance = tf.reduce_mean(tf.square(x - mean), axis=axes)
  return mean, context.all_reduce(tf.distribute.ReduceOp.MEAN, variance)


# The `training` argument of the batch norms (and of every layer and bijector that
# passes it on) takes three values: False (inference: the moving averages), True
# (training: the batch's statistics, and the moving averages move towards them by
# 1 - momentum), and ESTIMATE_STATISTICS (the batch's statistics, which replace the
# moving averages outright: `training.batch_norm_estimation` averages them over
# batches).
ESTIMATE_STATISTICS = "estimate_statistics"


def update_moving_averages(norm, mean, variance, training=True):
  """Moves a batch norm's statistics towards the batch's: by 1 - momentum in training
  mode; all the way (replaced) when estimating statistics.

  `norm` has `momentum`, `moving_mean` and `moving_variance` (BatchNorm here, the
  flow's FlowBatchNorm).
  """
  mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
  if training == ESTIMATE_STATISTICS:
    norm.moving_mean.assign(mean)
    norm.moving_variance.assign(variance)
    return
  decay = 1.0 - norm.momentum
  norm.moving_mean.assign_sub(decay * (norm.moving_mean - mean))
  norm.moving_variance.assign_sub(decay * (norm.moving_variance - variance))


def single_replica():
  """Whether this runs outside a strategy or on its only replica."""
  context = tf.distribute.get_replica_context()
  return context is None or context.num_replicas_in_sync == 1


def biased_variance(unbiased_variance, inputs):
  """The biased (1/N) variance from TF's fused kernel's unbiased (1/(N-1)) one."""
  count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), unbiased_variance.dtype)
  return unbiased_variance * (count - 1.0) / count
