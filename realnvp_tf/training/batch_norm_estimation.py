"""Batch-norm statistics re-estimated for fixed weights ("precise batch norm").

Moving averages trail the weights by about 1 / (1 - momentum) steps. While the
learning rate is still high, the weights of those steps differ enough that the
inference-mode figure can be far from the training batches' (docs/training.md has a
measured case). `BatchNormEstimator` runs training batches through the
flow with `training=nets.ESTIMATE_STATISTICS` (batch statistics, which replace the
moving averages; weights and optimizer untouched) and sets each moving mean and
variance to the mean of those batches' statistics (Wu & Johnson, 2021).
"""

from absl import logging
import numpy as np
import tensorflow as tf

from realnvp_tf.model import flow as flow_lib
from realnvp_tf.model import nets


class BatchNormEstimator:
  """Sets every batch norm's moving statistics of `flow` to their mean over training
  batches: `estimator(iterator, num_batches)`.

  Made once per run: its step is traced on the first call and reused (a new function
  per call would trace the whole flow again each time).

  Args:
    flow: the RealNVP distribution (its variables may be mirrored by `strategy`).
    strategy: the strategy the iterators distribute for.
  """

  def __init__(self, flow, strategy):
    self.flow = flow
    self.statistics = list(flow.non_trainable_variables)
    conditional = flow.bijector.config.conditional

    def estimate(batch):  # batches of a class-conditional flow are (images, labels)
      images, labels = batch if conditional else (batch, None)
      return flow_lib.log_prob(flow, images, labels, training=nets.ESTIMATE_STATISTICS)

    self._run = tf.function(lambda it: strategy.run(estimate, args=(next(it),)))

  def __call__(self, iterator, num_batches):
    """Estimates on up to `num_batches` batches of `iterator` (a finite one may run
    out before). Returns the number of batches used: a batch with non-finite
    statistics is left out (and not left in the variables); if none is left, the
    moving averages are kept."""
    statistics = self.statistics
    if num_batches <= 0 or not statistics:
      return 0
    moving_averages = [v.numpy() for v in statistics]
    sums = [np.zeros(v.shape, np.float64) for v in statistics]
    used = 0
    for _ in range(num_batches):
      try:
        self._run(iterator)
      except tf.errors.OutOfRangeError:  # a finite dataset ran out: use what came
        break
      values = [v.numpy() for v in statistics]
      if all(np.all(np.isfinite(value)) for value in values):
        sums = [total + value for total, value in zip(sums, values, strict=True)]
        used += 1
    estimates = [total / used for total in sums] if used else moving_averages
    for variable, value in zip(statistics, estimates, strict=True):
      variable.assign(value)
    if used:
      logging.info("Batch-norm statistics re-estimated on %d training batches.", used)
    else:
      logging.warning("No training batch gave finite batch-norm statistics; the "
                      "moving averages are kept.")
    return used
