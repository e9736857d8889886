"""Configurations: `RealNVPConfig` (the flow) and `TrainConfig` (its training run)."""

import dataclasses
import math
import os
from typing import Optional, Tuple

from realnvp_tf.data import registry
from realnvp_tf.data import specs
from realnvp_tf.data.specs import CUSTOM
from realnvp_tf.data.specs import IMAGE_DIR
from realnvp_tf.data.tfds_prep import TFDS_PREFIX

COMPUTE_DTYPES = ("float32", "bfloat16")
SELECT = ("best", "last")


def _check_finite(config):
  """Every float setting must be a finite number (a NaN passes every `<` check)."""
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
    compute_dtype: "float32", or "bfloat16" to run the s/t networks in bfloat16 (their
      variables, the coupling arithmetic, the log-dets, the flow's batch norm and the
      loss stay float32, so the flow stays exactly invertible with an exact log-det).
    num_classes: 0 for an unconditional flow p(x); n > 0 for a class-conditional one
      p(x | y), y in 0..n-1: the base Normal gets a mean and log-scale per class over
      every latent dimension, and every coupling's s/t network sees a learned
      embedding of y (see `bijectors.ClassPrior`, `AffineCoupling`).
    class_embedding_dim: channels of each coupling's label embedding (conditional
      flows only).
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
  num_classes: int = 0
  class_embedding_dim: int = 8

  def __post_init__(self):
    _check_finite(self)
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

  @property
  def conditional(self) -> bool:
    """Whether the flow models p(x | y) (`num_classes` > 0)."""
    return self.num_classes > 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping settings (paper defaults).

  Attributes:
    dataset: one of `data.DATASET_NAMES`, `tfds:NAME[/CONFIG]` (any
      tensorflow-datasets image set), `data.IMAGE_DIR` with `image_dir`, or
      `data.CUSTOM` for datasets given to the Trainer (`data.from_tf_data`).
    image_dir: a folder of image files to train on (see `data.image_folder`).
    image_size: "H" or "HxW": images are resized to cover it and centre-cropped
      (needed with `image_dir`; optional for the others).
    channels: 1 or 3, for `image_dir`.
    validation_fraction, test_fraction: the hash split of an `image_dir` without
      train/validation/test subfolders.
    fail_on_bad_images: refuse an `image_dir` with files that cannot be decoded
      (otherwise they are left out and reported once).
    select: "best" (the weights with the best validation figure, kept in
      model_dir/best/) or "last": what the final test figure, metrics.json and the
      export use.
    batch_size: global batch size, split evenly over the replicas.
    train_steps: optimizer steps in all (a resumed run continues up to this).
    learning_rate: Adam's learning rate.
    warmup_steps: linear learning-rate warm-up from 0 (0: none).
    l2_coeff: L2 penalty on the weight-norm gains and tanh scales.
    clip_norm: gradients are clipped to this global norm.
    ema_decay: Polyak averaging of the weights (0: off); when on, the averages are
      used for evaluation and export.
    batch_norm_recalibration_batches: at the end of training, the batch norms'
      moving statistics are re-estimated on this many training batches for the final
      weights (see `batch_norm_estimation`; 0: keep the moving averages).
    checkpoint_every: steps between checkpoints.
    eval_every: steps between validation evaluations (0: only the final one); the
      test split is read once, at the end.
    eval_images: validation images of each evaluation (the same ones each time; 0:
      all).
    eval_batch_size: batch size of evaluation.
    log_every: steps between TensorBoard scalars.
    max_nonfinite_steps: consecutive non-finite steps (skipped) before training stops.
    num_samples: samples in the TensorBoard image grid.
    seed: seed of data order, dequantization noise and sampling.
    data_dir, manual_dir: see `data.make_dataset`.
    export: write a SavedModel to `model_dir/export` at the end.
  """

  dataset: str = "mnist"
  image_dir: Optional[str] = None
  image_size: Optional[str] = None
  channels: int = 3
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  fail_on_bad_images: bool = False
  select: str = "best"
  batch_size: int = 64
  train_steps: int = 100_000
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  l2_coeff: float = 5e-5
  clip_norm: float = 100.0
  ema_decay: float = 0.0
  batch_norm_recalibration_batches: int = 50
  checkpoint_every: int = 1000
  eval_every: int = 5000
  eval_images: int = 2000
  eval_batch_size: int = 256
  log_every: int = 100
  max_nonfinite_steps: int = 10
  num_samples: int = 36
  seed: int = 0
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  export: bool = True

  def __post_init__(self):
    _check_finite(self)
    if self.image_dir:
      object.__setattr__(self, "dataset", IMAGE_DIR)
      # Recorded in config.json and the export: absolute, so it means the same
      # folder from any working directory.
      object.__setattr__(self, "image_dir",
                         os.path.abspath(os.path.expanduser(self.image_dir)))
    if self.dataset == IMAGE_DIR and not self.image_dir:
      raise ValueError(f"dataset={IMAGE_DIR!r} needs image_dir (--image_dir=DIR).")
    if self.dataset == IMAGE_DIR and not self.image_size:
      raise ValueError("An image folder needs an image size: pass --image_size=H or "
                       "HxW (TrainConfig(image_size=...)) with --image_dir.")
    if self.dataset not in (IMAGE_DIR, CUSTOM) and not self.dataset.startswith(
        TFDS_PREFIX):
      registry.get_dataset_info(self.dataset)  # unknown names fail here, with the list
    if self.select not in SELECT:
      raise ValueError(f"select must be one of {SELECT}; got {self.select!r}.")
    for name in ("batch_size", "train_steps", "checkpoint_every", "eval_batch_size",
                 "log_every", "max_nonfinite_steps", "num_samples"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive; got {getattr(self, name)}.")
    for name in ("warmup_steps", "eval_every", "eval_images", "l2_coeff",
                 "batch_norm_recalibration_batches"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}.")
    if self.learning_rate <= 0 or self.clip_norm <= 0:
      raise ValueError("learning_rate and clip_norm must be positive.")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"ema_decay must be in [0, 1); got {self.ema_decay}.")

  def data_spec(self):
    """The settings that say which images the run means (`data.resolve`'s
    arguments): recorded with the model, so evaluation reads the same images."""
    return dict(dataset=self.dataset, image_dir=self.image_dir,
                image_size=self.image_size, channels=self.channels,
                validation_fraction=self.validation_fraction,
                test_fraction=self.test_fraction)

  def dataset_info(self):
    """The run's `data.DatasetInfo` (`data.resolve`: a folder is decoded, a tfds set
    prepared, once per process)."""
    return specs.resolve(**self.data_spec(), fail_on_bad_images=self.fail_on_bad_images,
                           data_dir=self.data_dir, manual_dir=self.manual_dir,
                           min_train_images=self.batch_size)
