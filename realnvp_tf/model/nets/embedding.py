"""The label embedding of a class-conditional coupling's s/t network."""

import keras
import tensorflow as tf


class ClassEmbedding(keras.layers.Layer):
  """A learned vector per class, laid over every position of an image as channels.

  `call(labels, like)` maps int labels [B] and a [B, H, W, C] tensor to [B, H, W, dim]:
  row `labels[b]` of the embedding table at every position. A class-conditional
  coupling concatenates it to its network's input, so s and t depend on y.
  """

  def __init__(self, num_classes, dim, **kwargs):
    super().__init__(**kwargs)
    if num_classes <= 0 or dim <= 0:
      raise ValueError(
          f"num_classes and dim must be positive; got {num_classes}, {dim}.")
    self.num_classes = int(num_classes)
    self.dim = int(dim)

  def build(self, input_shape=None):
    del input_shape  # the table's shape depends on the classes alone
    # Unit scale, like a one-hot code: the first convolution sees y as clearly as
    # the pixels from the first step on.
    self.embeddings = self.add_weight(
        name="embeddings", shape=(self.num_classes, self.dim),
        initializer=keras.initializers.RandomNormal(stddev=1.0), autocast=False)

  def call(self, labels, like):
    # A one-hot product rather than a gather: the gradient is a dense tensor, as
    # every other gradient (tf.gather's IndexedSlices would be densified later).
    vectors = tf.matmul(tf.one_hot(labels, self.num_classes),
                        tf.convert_to_tensor(self.embeddings))
    spatial = tf.shape(like)[:-1]
    return tf.broadcast_to(vectors[:, None, None, :],
                           tf.concat([spatial, [self.dim]], 0))

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, dim=self.dim)
    return config
