"""The model's configuration: every number that shapes a RealNVP flow."""

import dataclasses
from typing import Tuple

COMPUTE_DTYPES = ("float32", "bfloat16")


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
    compute_dtype: "float32", or "bfloat16" to run the s/t networks in bfloat16 (their
      variables, the coupling arithmetic, the log-dets, the flow's batch norm and the
      loss stay float32, so the flow stays exactly invertible with an exact log-det).
  """

  image_shape: Tuple[int, int, int] = (28, 28, 1)
  num_scales: int = 3
  num_res_blocks: int = 4
  num_filters: int = 32
  num_levels: int = 256
  logit_alpha: float = 0.05
  use_batch_norm: bool = True
  batch_norm_momentum: float = 0.9
  batch_norm_epsilon: float = 1e-4
  compute_dtype: str = "float32"

  def __post_init__(self):
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
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}; got "
                       f"{self.compute_dtype!r}.")
    height, width, _ = shape
    factor = 2 ** (self.num_scales - 1)
    if height % factor or width % factor:
      raise ValueError(
          f"image_shape {shape}: height and width must be divisible by "
          f"2**(num_scales - 1) = {factor} for num_scales={self.num_scales}; use "
          f"fewer scales or pad the images.")

  @property
  def num_dims(self) -> int:
    """D = H * W * C, the dimension of the event space."""
    height, width, channels = self.image_shape
    return height * width * channels
