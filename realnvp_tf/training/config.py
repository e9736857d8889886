"""`TrainConfig`: the optimisation and bookkeeping settings of a training run."""

import dataclasses
import os
from typing import Optional

from realnvp_tf import data
from realnvp_tf.model import config as config_lib
from realnvp_tf.training import schedule

SELECT = ("best", "last")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping settings (paper defaults).

  Attributes:
    dataset, image_dir, image_size, channels, validation_fraction, test_fraction:
      which images (`data_spec()`, see `data.DataSpec`): one of
      `data.DATASET_NAMES`, `tfds:NAME[/CONFIG]` (any tensorflow-datasets image
      set), `data.IMAGE_DIR` with `image_dir` (a folder of image files), or
      `data.CUSTOM` for datasets given to the Trainer (`data.from_tf_data`).
    fail_on_bad_images: refuse an `image_dir` with files that cannot be decoded
      (otherwise they are left out and reported once).
    allow_data_change: resume a run on other data than it was trained on (a folder
      moved or extended on purpose); otherwise a resume refuses it (`resume`).
    select: "best" (the weights with the best validation figure, kept in
      model_dir/best/) or "last": what the final test figure, metrics.json and the
      export use.
    batch_size: global batch size, split evenly over the replicas.
    train_steps: optimizer steps in all (a resumed run continues up to this).
    train_minutes: a wall-clock budget for the training loop of this process (0:
      none): training ends, and is finished as at `train_steps`, once it has run
      out, and the learning-rate decay is fitted to it (`actions.BudgetHorizon`).
    learning_rate: Adam's peak learning rate.
    warmup_steps: linear learning-rate warm-up from 0 (0: none).
    decay: the learning rate after the warm-up (`training.schedule.DECAYS`):
      "cosine" or "linear" to zero at the end of training (`train_steps`, or the end
      of `train_minutes`), or "none" (constant).
    decay_fraction: the share of the steps after the warm-up the decay takes, at
      their end (1: all; 0.2: the peak rate until the last 20%).
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
    steps_per_loop: optimizer steps per call of the traced training loop (one host
      round trip per call). A loop also ends at every checkpoint and evaluation step,
      so their cadences stay exact; signals and preemption are seen between loops.
    deterministic: bit-identical runs for the same settings on the same machine:
      TensorFlow's op determinism and seeded initial weights (see docs/training.md
      for what it costs and what it cannot promise).
    initial_loss_scale, loss_scale_growth_steps: dynamic loss scaling of float16
      runs (`training.loss_scale`): the first scale, and the applied steps in a row
      after which it doubles. Unused in float32 and bfloat16.
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
  allow_data_change: bool = False
  select: str = "best"
  batch_size: int = 64
  train_steps: int = 100_000
  train_minutes: float = 0.0
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  decay: str = "none"
  decay_fraction: float = 1.0
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
  steps_per_loop: int = 1
  deterministic: bool = False
  initial_loss_scale: float = 2.0**15
  loss_scale_growth_steps: int = 2000
  num_samples: int = 36
  seed: int = 0
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  export: bool = True

  def __post_init__(self):
    config_lib.check_finite(self)
    if self.image_dir:
      # Recorded in config.json and the export: absolute, so it means the same
      # folder from any working directory.
      object.__setattr__(self, "image_dir",
                         os.path.abspath(os.path.expanduser(self.image_dir)))
    self.data_spec()  # a bad combination or an unknown name fails here
    schedule.check_decay(self.decay, self.decay_fraction)
    if self.select not in SELECT:
      raise ValueError(f"select must be one of {SELECT}; got {self.select!r}.")
    for name in ("batch_size", "train_steps", "checkpoint_every", "eval_batch_size",
                 "log_every", "max_nonfinite_steps", "num_samples", "steps_per_loop",
                 "loss_scale_growth_steps"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive; got {getattr(self, name)}.")
    for name in ("warmup_steps", "eval_every", "eval_images", "l2_coeff",
                 "train_minutes", "batch_norm_recalibration_batches"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}.")
    if self.learning_rate <= 0 or self.clip_norm <= 0:
      raise ValueError("learning_rate and clip_norm must be positive.")
    if self.initial_loss_scale < 1.0:
      raise ValueError(
          f"initial_loss_scale must be >= 1; got {self.initial_loss_scale}.")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"ema_decay must be in [0, 1); got {self.ema_decay}.")

  def data_spec(self) -> data.DataSpec:
    """Which images the run means: recorded with the model, so evaluation reads the
    same images."""
    return data.DataSpec(**{field.name: getattr(self, field.name)
                            for field in dataclasses.fields(data.DataSpec)})
