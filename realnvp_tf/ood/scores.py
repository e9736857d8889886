"""Out-of-distribution scores of a flow: raw likelihood and two that correct it.

A flow trained on Fashion-MNIST gives MNIST digits a higher likelihood than its own
test images (Nalisnick et al., ICLR 2019): simple images are likely under any model.
For an image x with D dimensions, every score below is in bits/dim and higher means
"more likely out of distribution":

- `bits_per_dim`: -log2 p(x) / D, the model's code length (raw likelihood).
- `png_bits_per_dim`: 8 * len(PNG(x)) / D, the length of a lossless PNG encoding at
  maximum compression (`tf.io.encode_png(x, compression=9)`, headers included): a
  generic estimate of the image's complexity, not a score of the model.
- `complexity_corrected`: bits_per_dim - png_bits_per_dim (Serra et al., ICLR
  2020): the model's code length relative to a generic compressor's. An image of the
  training distribution is coded far better by the model than by PNG (very negative);
  a simple image from elsewhere is short under both.
- `typicality`: |bits_per_dim - m|, with m the mean bits/dim of held-out images of
  the training distribution (Nalisnick et al., 2019, "Detecting out-of-distribution
  inputs to deep generative models using typicality"): in high dimensions the
  training data lie in a typical set whose likelihood is near the mean, so images
  that are much *more* likely are suspicious too.

For a batch of B images, `batch_typicality` = |mean bits/dim - m| / (s / sqrt(B)),
with s the spread of the same held-out images: a z-statistic, large when the batch as
a whole is atypical.
"""

import math

import tensorflow as tf

# Per-image scores, in the order of tables and files.
SCORE_NAMES = ("bits_per_dim", "png_bits_per_dim", "complexity_corrected",
               "typicality")
# What each score detects, for tables.
DESCRIPTIONS = {
    "bits_per_dim": "raw likelihood",
    "png_bits_per_dim": "PNG length (no model)",
    "complexity_corrected": "bits/dim - PNG bits/dim",
    "typicality": "|bits/dim - held-out mean|",
}


def png_bits_per_dim(images):
  """8 * len(tf.io.encode_png(image, compression=9)) / D for each uint8 image of a
  [B, H, W, C] batch (C = 1 or 3): float32 [B]."""
  images = tf.convert_to_tensor(images, tf.uint8)
  lengths = tf.map_fn(
      lambda image: tf.strings.length(tf.io.encode_png(image, compression=9)),
      images, fn_output_signature=tf.int32)
  num_dims = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
  return 8.0 * tf.cast(lengths, tf.float32) / num_dims


def scores(bits_per_dim, png_bits, reference=None):
  """The scores of a batch from its bits/dim and PNG bits/dim (float32 [B] each).

  `reference` = (mean, spread) of held-out bits/dim adds `typicality` and
  `batch_typicality`; without it they are left out.
  """
  result = {"bits_per_dim": bits_per_dim, "png_bits_per_dim": png_bits,
            "complexity_corrected": bits_per_dim - png_bits}
  if reference is not None:
    mean, spread = reference[0], reference[1]
    result["typicality"] = tf.abs(bits_per_dim - mean)
    count = tf.cast(tf.size(bits_per_dim), tf.float32)
    result["batch_typicality"] = (tf.abs(tf.reduce_mean(bits_per_dim) - mean)
                                  / (spread / tf.sqrt(count)))
  return result


def reference_statistics(per_image_bits_per_dim, split):
  """The held-out figures that `typicality` measures against: a JSON-able dict(mean,
  std, num_images, split)."""
  values = [float(v) for v in per_image_bits_per_dim]
  if len(values) < 2:
    raise ValueError(f"Typicality needs at least 2 {split} images; got {len(values)}.")
  mean = math.fsum(values) / len(values)
  std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
  return dict(mean=mean, std=std, num_images=len(values), split=split)
