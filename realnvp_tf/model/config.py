"""`RealNVPConfig`: the settings of a multi-scale RealNVP flow."""

import dataclasses
import math
from typing import Tuple

from realnvp_tf.model.nets import batch_statistics
from realnvp_tf.model.nets import resnet

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
# The Keras dtype policy of the s/t networks for each compute dtype: variables stay
# float32, the networks compute in the named type.
KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
                  "float16": "mixed_float16"}


def check_finite(config):
  """Every float field of a config dataclass must be a finite number (a NaN passes
  every `<` check)."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"{field.name} must be a finite number; got {value}.")


@dataclasses.dataclass(frozen=True)
class RealNVPConfig:
  """Configuration of a multi-scale RealNVP flow (Dinh et al., 2017).

  Attributes:
    image_shape: `(H, W, C)` of the images the flow models.
    num_scales: number of scales. Every scale but the last halves H and W, so both
      must be divisible by `2**(num_scales - 1)`.
    num_res_blocks: residual blocks in each s/t network.
    num_filters: feature maps of the s/t networks at the finest scale; they double at
      each coarser scale, and the channel-wise couplings of a scale use twice the
      scale's filters.
    num_levels: K, the number of pixel values (256 for 8-bit images). The flow's event
      space is dequantized pixel intensity in [0, K).
    logit_alpha: alpha of the logit preprocessing, which maps [0, K) into
      [alpha, 1 - alpha] before the logit.
    use_batch_norm: batch normalisation in the flow (after each coupling) and inside the
      s/t networks, as in the paper.
    batch_norm_momentum: momentum of the moving averages (flow and networks).
    batch_norm_epsilon: epsilon added to the variance (flow and networks).
    compute_dtype: "float32", or "bfloat16" / "float16" to run the s/t networks in that
      type (their variables, the coupling arithmetic, the log-dets, the flow's batch
      norm, the networks' batch-norm statistics and the loss stay float32, so the flow
      stays exactly invertible with an exact log-det). float16 training needs loss
      scaling, which the training step does (`training.step`).
    num_classes: 0 for an unconditional flow p(x); n > 0 for a class-conditional one
      p(x | y), y in 0..n-1: the base Normal gets a mean and log-scale per class over
      every latent dimension, and every coupling's s/t network sees a learned
      embedding of y (see `bijectors.ClassPrior`, `AffineCoupling`).
    class_embedding_dim: channels of each coupling's label embedding (conditional
      flows only).
    dropout_rate: dropout between the two convolutions of every residual block, in
      training mode only (0: none). A regulariser for small datasets; it adds no
      variables, so a run may change it when it resumes.
  """

  image_shape: Tuple[int, int, int] = (28, 28, 1)
  num_scales: int = 3
  num_res_blocks: int = 4
  num_filters: int = 32
  num_levels: int = 256
  logit_alpha: float = 0.05
  use_batch_norm: bool = True
  batch_norm_momentum: float = batch_statistics.MOMENTUM
  batch_norm_epsilon: float = batch_statistics.EPSILON
  compute_dtype: str = "float32"
  num_classes: int = 0
  class_embedding_dim: int = 8
  dropout_rate: float = 0.0

  def __post_init__(self):
    check_finite(self)
    shape = tuple(int(d) for d in self.image_shape)
    object.__setattr__(self, "image_shape", shape)
    if len(shape) != 3 or min(shape) <= 0:
      raise ValueError(
          f"image_shape must be (height, width, channels) with positive sizes; "
          f"got {self.image_shape}.")
    for name in ("num_scales", "num_res_blocks", "num_filters"):
      value = getattr(self, name)
      if int(value) != value or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value}.")
    if int(self.num_classes) != self.num_classes or self.num_classes < 0:
      raise ValueError(f"num_classes must be an integer >= 0 (0: unconditional); got "
                       f"{self.num_classes}.")
    if int(self.class_embedding_dim) != self.class_embedding_dim or (
        self.class_embedding_dim <= 0):
      raise ValueError(f"class_embedding_dim must be a positive integer; got "
                       f"{self.class_embedding_dim}.")
    if int(self.num_levels) != self.num_levels or self.num_levels < 2:
      raise ValueError(
          f"num_levels must be an integer >= 2 (256 for 8-bit images); "
          f"got {self.num_levels}.")
    if not 0.0 <= self.logit_alpha < 0.5:
      raise ValueError(f"logit_alpha must be in [0, 0.5); got {self.logit_alpha}.")
    if not 0.0 <= self.batch_norm_momentum < 1.0:
      raise ValueError(
          f"batch_norm_momentum must be in [0, 1); got {self.batch_norm_momentum}.")
    if self.batch_norm_epsilon <= 0:
      raise ValueError(
          f"batch_norm_epsilon must be positive; got {self.batch_norm_epsilon}.")
    resnet.check_dropout_rate(self.dropout_rate)
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}; got "
                       f"{self.compute_dtype!r}.")
    problem = scales_problem(shape, self.num_scales)
    if problem:
      raise ValueError(f"image_shape {shape}: {problem}.")

  @property
  def num_dims(self) -> int:
    """D = H * W * C, the dimension of the event space."""
    height, width, channels = self.image_shape
    return height * width * channels

  @property
  def conditional(self) -> bool:
    """Whether the flow models p(x | y) (`num_classes` > 0)."""
    return self.num_classes > 0


def max_scales(image_shape):
  """The most scales images of `image_shape` (H, W, ...) allow."""
  scales = 1
  while image_shape[0] % 2 ** scales == 0 and image_shape[1] % 2 ** scales == 0:
    scales += 1
  return scales


def scales_problem(image_shape, num_scales):
  """Why `num_scales` scales do not fit images of `image_shape`, or None.

  Every scale but the last halves H and W, so both must be divisible by
  2**(num_scales - 1).
  """
  height, width = int(image_shape[0]), int(image_shape[1])
  factor = 2 ** (num_scales - 1)
  if height % factor == 0 and width % factor == 0:
    return None
  return (f"{height}x{width} images are not divisible by 2**(num_scales - 1) = "
          f"{factor}; use num_scales at most {max_scales(image_shape)}, or pad the "
          f"images")
