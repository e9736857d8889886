"""absl flags shared by train.py and eval.py, and the configs built from them."""

import dataclasses

from absl import flags

from realnvp_tf import data
from realnvp_tf.config import COMPUTE_DTYPES
from realnvp_tf.config import RealNVPConfig

FLAGS = flags.FLAGS

_MODEL_DEFAULTS = RealNVPConfig()


def define_data_flags():
  flags.DEFINE_enum("dataset", "mnist", list(data.DATASET_NAMES), "Dataset.")
  flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
  flags.DEFINE_string("manual_dir", None, "Folder with the official raw files, for "
                      "machines without internet (e.g. ../shared/data/mnist).")


def define_model_flags():
  flags.DEFINE_integer("num_scales", _MODEL_DEFAULTS.num_scales, "Scales of the "
                       "multi-scale architecture.", lower_bound=1)
  flags.DEFINE_integer("num_res_blocks", _MODEL_DEFAULTS.num_res_blocks,
                       "Residual blocks per s/t network.", lower_bound=0)
  flags.DEFINE_integer("num_filters", _MODEL_DEFAULTS.num_filters,
                       "s/t feature maps at the finest scale.", lower_bound=1)
  flags.DEFINE_bool("use_batch_norm", _MODEL_DEFAULTS.use_batch_norm,
                    "Batch norm in the flow and the s/t networks.")
  flags.DEFINE_float("batch_norm_momentum", _MODEL_DEFAULTS.batch_norm_momentum,
                     "Momentum of the batch-norm moving averages.")
  flags.DEFINE_float("logit_alpha", _MODEL_DEFAULTS.logit_alpha,
                     "alpha of the logit preprocessing.")
  define_precision_flag(_MODEL_DEFAULTS.compute_dtype)


def define_optimization_flags():
  """The optimizer's flags (TrainConfig's names and defaults: the paper's)."""
  defaults = {f.name: f.default for f in dataclasses.fields(_train_config_class())}
  flags.DEFINE_integer("batch_size", defaults["batch_size"],
                       "Global batch size (split over replicas).", lower_bound=1)
  flags.DEFINE_float("learning_rate", defaults["learning_rate"], "Adam learning rate.")
  flags.DEFINE_integer("warmup_steps", defaults["warmup_steps"],
                       "Linear learning-rate warm-up steps.", lower_bound=0)
  flags.DEFINE_float("l2_coeff", defaults["l2_coeff"],
                     "L2 penalty on weight-norm gains and tanh scales.")
  flags.DEFINE_float("clip_norm", defaults["clip_norm"], "Global-norm gradient clipping.")
  flags.DEFINE_float("ema_decay", defaults["ema_decay"], "Polyak averaging of the "
                     "weights (0: off); the averages are evaluated and exported.")
  flags.DEFINE_integer(
      "batch_norm_recalibration_batches", defaults["batch_norm_recalibration_batches"],
      "After training, re-estimate the batch-norm statistics for the final weights "
      "on this many training batches (0: keep the moving averages).", lower_bound=0)
  flags.DEFINE_integer("max_nonfinite_steps", defaults["max_nonfinite_steps"],
                       "Consecutive skipped non-finite steps before training stops.")
  flags.DEFINE_integer("seed", defaults["seed"], "Seed of data order, noise and samples.")


def _train_config_class():
  from realnvp_tf import training  # pylint: disable=g-import-not-at-top
  return training.TrainConfig


def define_precision_flag(default):
  flags.DEFINE_enum("mixed_precision", default, list(COMPUTE_DTYPES),
                    "bfloat16: run the s/t networks in bfloat16 (the flow's "
                    "arithmetic, log-dets and loss stay float32).")


def register_model_validators():
  """Image sides must fit the scales: checked at flag parsing, before any work."""

  def sides_fit(values):
    shape = data.get_dataset_info(values["dataset"]).image_shape
    factor = 2 ** (values["num_scales"] - 1)
    if shape[0] % factor or shape[1] % factor:
      raise flags.ValidationError(
          f"--dataset={values['dataset']} has {shape[0]}x{shape[1]} images, not "
          f"divisible by 2**(num_scales - 1) = {factor}; use --num_scales at most "
          f"{_max_scales(shape)}.")
    return True

  flags.register_multi_flags_validator(["dataset", "num_scales"], sides_fit)


def _max_scales(shape):
  scales = 1
  while shape[0] % 2 ** scales == 0 and shape[1] % 2 ** scales == 0:
    scales += 1
  return scales


def model_config_from_flags():
  info = data.get_dataset_info(FLAGS.dataset)
  return RealNVPConfig(
      image_shape=info.image_shape, num_levels=info.num_levels,
      num_scales=FLAGS.num_scales, num_res_blocks=FLAGS.num_res_blocks,
      num_filters=FLAGS.num_filters, use_batch_norm=FLAGS.use_batch_norm,
      batch_norm_momentum=FLAGS.batch_norm_momentum, logit_alpha=FLAGS.logit_alpha,
      compute_dtype=FLAGS.mixed_precision)


def train_config_from_flags(config_class):
  """A config dataclass filled from the flags of the same names."""
  values = {f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(config_class)
            if f.name in FLAGS}
  return config_class(**values)
