"""The per-class base distribution of a class-conditional flow, as a bijector."""

import tensorflow as tf

from realnvp_tf.model.bijectors import fused


class ClassPrior(fused.FusedBijector):
  """A Normal with a mean and log-scale per class, over every latent dimension.

  The base distribution of a class-conditional RealNVP is N(mu_y, diag(sigma_y^2))
  over the whole image-shaped latent z (the factored-out dimensions included), with
  mu_y and log sigma_y learned for each class y. That is a standard Normal eps pushed
  through this bijector, the flow's latent-side step, so the flow keeps its standard
  Normal base:

    forward(eps) = mu_y + exp(log_sigma_y) * eps,   fldj =  sum(log_sigma_y)
    inverse(z)   = (z - mu_y) * exp(-log_sigma_y),  ildj = -sum(log_sigma_y)

  with y the keyword argument `labels` (int [B], one class per image). Both start at
  zero: the flow starts with the standard Normal for every class.
  """

  def __init__(self, event_shape, num_classes, validate_args=False,
               name="class_prior"):
    parameters = dict(locals())
    event_shape = tuple(int(d) for d in event_shape)
    if len(event_shape) != 3:
      raise ValueError(f"event_shape must be (H, W, C); got {event_shape}.")
    if int(num_classes) != num_classes or num_classes < 1:
      raise ValueError(f"num_classes must be a positive integer; got {num_classes}.")
    with tf.name_scope(name) as name:
      self._num_classes = int(num_classes)
      self.mean = tf.Variable(tf.zeros((num_classes,) + event_shape), name="mean")
      self.log_scale = tf.Variable(tf.zeros((num_classes,) + event_shape),
                                   name="log_scale")
      super().__init__(parameters=parameters, name=name, validate_args=validate_args)

  @property
  def num_classes(self):
    return self._num_classes

  def _of_class(self, labels):
    if labels is None:
      raise ValueError(f"{self.name} is class-conditional: pass labels.")
    # A one-hot product rather than a gather, for dense gradients.
    one_hot = tf.one_hot(labels, self._num_classes)

    def pick(table):
      return tf.einsum("bk,khwc->bhwc", one_hot, table)

    return pick(self.mean), pick(self.log_scale)

  def _inverse_and_log_det(self, y, labels=None, **kwargs):
    del kwargs  # e.g. training: no batch statistics here
    mean, log_scale = self._of_class(labels)
    return (y - mean) * tf.exp(-log_scale), -fused.sum_over_event(log_scale)

  def _forward_and_log_det(self, x, labels=None, **kwargs):
    del kwargs
    mean, log_scale = self._of_class(labels)
    return mean + tf.exp(log_scale) * x, fused.sum_over_event(log_scale)
