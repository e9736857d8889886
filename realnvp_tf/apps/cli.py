"""absl flags shared by the apps, the configs built from them, and bundled configs."""

import dataclasses
import importlib.resources
import math
import os
import sys

from absl import flags

from realnvp_tf import data
from realnvp_tf import pretrained
from realnvp_tf.apps import messages
from realnvp_tf.apps import process
from realnvp_tf.model import config as model_config_lib
from realnvp_tf.model.config import COMPUTE_DTYPES
from realnvp_tf.model.config import RealNVPConfig
from realnvp_tf.runs import loading
from realnvp_tf.training import schedule
from realnvp_tf.training import trainer as trainer_lib
from realnvp_tf.training.config import TrainConfig

FLAGS = flags.FLAGS

# Every app has it (run_app lists it in --help).
flags.DEFINE_bool("library_logs", False, "Also show the INFO log lines of TensorFlow "
                  "and tensorflow-datasets (by default only this package's lines and "
                  "every library's warnings and errors are shown).")

_MODEL_DEFAULTS = RealNVPConfig()


def bundled_configs():
  """{name: path} of the flagfiles shipped in the package (realnvp_tf/apps/configs/)."""
  folder = importlib.resources.files("realnvp_tf.apps") / "configs"
  return {os.path.splitext(entry.name)[0]: str(entry)
          for entry in folder.iterdir() if entry.name.endswith(".cfg")}


def define_config_flag():
  flags.DEFINE_string(
      "config", None, "A bundled flagfile by name (" + ", ".join(
          sorted(bundled_configs())) + "); flags after it override its values.")


def expand_config_flag(argv):
  """`--config=NAME` (or `--config NAME`) -> `--flagfile=<the bundled NAME.cfg>`.

  absl reads flagfiles while parsing, so the name is resolved before that, in place:
  flags after it override the file's values, as with --flagfile. An unknown name
  exits with a one-line error that lists the bundled ones.
  """
  expanded, args = [argv[0]], iter(argv[1:])
  for arg in args:
    name = None
    if arg.startswith("--config="):
      name = arg.split("=", 1)[1]
    elif arg == "--config":
      name = next(args, "")
    if name is None:
      expanded.append(arg)
      continue
    configs = bundled_configs()
    if name not in configs:
      raise SystemExit(f"{os.path.basename(argv[0])}: error: --config={name} is not a "
                       f"bundled config; use one of {', '.join(sorted(configs))}, or "
                       f"--flagfile=PATH for a file of your own.")
    expanded.append(f"--flagfile={configs[name]}")
  return expanded


def run_app(main, app_module, argv=None):
  """`app.run(main)` for an app module run through a console script or a thin
  top-level script: --help lists `app_module`'s flags (absl shows the key flags of
  the script that was started, which defines none itself). The process then ends
  with main's exit status without the interpreter's teardown
  (`process.run_main`)."""
  for flag in FLAGS.get_key_flags_for_module(app_module):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS["library_logs"])
  process.keep_only_own_info_lines(
      show_all=lambda: FLAGS.is_parsed() and FLAGS.library_logs)
  process.run_main(main, argv=argv)



def define_data_flags():
  flags.DEFINE_string("dataset", "mnist", "Dataset: " + ", ".join(data.DATASET_NAMES)
                      + ", or tfds:NAME[/CONFIG] for any tensorflow-datasets image "
                      "set (ignored with --image_dir).")
  flags.register_validator(
      "dataset", lambda name: name in data.DATASET_NAMES or name == data.IMAGE_DIR
      or data.is_tfds_name(name),
      message="--dataset must be one of " + ", ".join(data.DATASET_NAMES) +
      ", or tfds:NAME[/CONFIG]")
  flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
  flags.DEFINE_string("manual_dir", None, "Folder with the official raw files, for "
                      "machines without internet (e.g. /path/to/mnist_files).")
  flags.DEFINE_string("image_dir", None, "Train on the PNG/JPEG/BMP/GIF files under "
                      "this folder (recursively); its train/, validation/, test/ "
                      "subfolders are the splits when train/ exists, else a stable "
                      "split by a hash of each file's path.")
  flags.DEFINE_string("image_size", None, "H or HxW: images are resized to cover it "
                      "and centre-cropped (needed with --image_dir).")
  flags.DEFINE_enum("channels", "3", ["1", "3"], "Channels of --image_dir images.")
  flags.DEFINE_float("validation_fraction", 0.1, "--image_dir: share of the images "
                     "hashed into the validation split.")
  flags.DEFINE_float("test_fraction", 0.1, "--image_dir: share of the images hashed "
                     "into the test split.")
  flags.DEFINE_bool("fail_on_bad_images", False, "--image_dir: refuse files that "
                    "cannot be decoded (by default they are left out and reported).")
  flags.DEFINE_bool("allow_data_change", False, "Resume a run on other data than it "
                    "was trained on (a folder moved or extended on purpose, other "
                    "split fractions); by default such a resume is refused.")


def define_trained_model_flags():
  """--saved_model, --model_dir, --pretrained and --select: the trained model an app
  reads (`load_trained_model` loads it)."""
  flags.DEFINE_string("saved_model", None, "An export/ directory written by train.py.")
  flags.DEFINE_string("model_dir", None, "A train.py model_dir: the weights it "
                      "selects (its best validation figure's by default, see "
                      "--select).")
  flags.DEFINE_string("pretrained", None, "A model shipped in the package, by name ("
                      + ", ".join(pretrained.names()) + ").")
  flags.DEFINE_enum("select", None, ["best", "last"], "With --model_dir: the weights "
                    "of the best validation figure (model_dir/best/) or the last ones "
                    "(default: what the run selects).")


def load_trained_model(mixed_precision=None):
  """The model that exactly one of --saved_model, --model_dir and --pretrained
  names, with --select and, for a checkpoint, s/t networks in `mixed_precision`
  (None: as trained). Raises ValueError (one line) for none or several, or a setting
  a SavedModel cannot take."""
  given = [name for name in ("saved_model", "model_dir", "pretrained")
           if getattr(FLAGS, name)]
  if len(given) != 1:
    raise ValueError("pass exactly one of --saved_model, --model_dir and --pretrained.")
  if FLAGS.model_dir:
    return loading.load_checkpoint(FLAGS.model_dir, mixed_precision, FLAGS.select)
  if mixed_precision:
    raise ValueError("--mixed_precision applies to --model_dir; a SavedModel keeps the "
                     "precision it was exported with.")
  if FLAGS.select:
    raise ValueError("--select applies to --model_dir; a SavedModel holds the weights "
                     "it was exported with.")
  if FLAGS.pretrained:
    return pretrained.load_pretrained(FLAGS.pretrained)
  return loading.load_saved_model(FLAGS.saved_model)


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
  flags.DEFINE_bool("class_conditional", False, "Model p(x | y) with the dataset's "
                    "class labels (a per-class base Normal, the label embedded in "
                    "every coupling); the export adds a classify signature.")
  flags.DEFINE_integer("class_embedding_dim", _MODEL_DEFAULTS.class_embedding_dim,
                       "--class_conditional: channels of each coupling's label "
                       "embedding.", lower_bound=1)
  flags.DEFINE_float("dropout_rate", _MODEL_DEFAULTS.dropout_rate, "Dropout inside "
                     "the s/t networks' residual blocks while training (0: none); a "
                     "regulariser for small datasets.", lower_bound=0.0,
                     upper_bound=0.99)
  define_precision_flag(_MODEL_DEFAULTS.compute_dtype)
  _require_finite("batch_norm_momentum", "logit_alpha", "dropout_rate")


def define_optimization_flags():
  """The optimizer's flags (TrainConfig's names and defaults: the paper's)."""
  defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
  flags.DEFINE_integer("batch_size", defaults["batch_size"],
                       "Global batch size (split over replicas).", lower_bound=1)
  flags.DEFINE_float("learning_rate", defaults["learning_rate"], "Adam learning rate.")
  flags.DEFINE_integer("warmup_steps", defaults["warmup_steps"],
                       "Linear learning-rate warm-up steps.", lower_bound=0)
  flags.DEFINE_enum("decay", defaults["decay"], list(schedule.DECAYS), "The learning "
                    "rate after the warm-up: cosine or linear decay to zero at the end "
                    "of training (--train_steps, or the end of --train_minutes), or "
                    "none (constant).")
  flags.DEFINE_float("decay_fraction", defaults["decay_fraction"], "--decay takes this "
                     "share of the steps after the warm-up, at their end (1: all; 0.2: "
                     "the peak rate until the last 20%).", lower_bound=1e-6,
                     upper_bound=1.0)
  flags.DEFINE_float("l2_coeff", defaults["l2_coeff"],
                     "L2 penalty on weight-norm gains and tanh scales.")
  flags.DEFINE_float("clip_norm", defaults["clip_norm"],
                     "Global-norm gradient clipping.")
  flags.DEFINE_float("ema_decay", defaults["ema_decay"], "Polyak averaging of the "
                     "weights (0: off); the averages are evaluated and exported.")
  flags.DEFINE_integer(
      "batch_norm_recalibration_batches", defaults["batch_norm_recalibration_batches"],
      "After training, re-estimate the batch-norm statistics for the final weights "
      "on this many training batches (0: keep the moving averages).", lower_bound=0)
  flags.DEFINE_integer("max_nonfinite_steps", defaults["max_nonfinite_steps"],
                       "Consecutive skipped non-finite steps before training stops.")
  flags.DEFINE_integer("seed", defaults["seed"], "Seed of data order, noise and "
                       "samples (and of the initial weights with --deterministic).")
  flags.DEFINE_integer("steps_per_loop", defaults["steps_per_loop"], "Optimizer steps "
                       "per call of the traced training loop (no host round trip "
                       "between them); a call also ends at every checkpoint and "
                       "evaluation step.", lower_bound=1)
  flags.DEFINE_bool("deterministic", defaults["deterministic"], "Bit-identical runs "
                    "for the same flags on the same machine: TensorFlow's "
                    "deterministic kernels and seeded initial weights (slower; "
                    "docs/training.md).")
  flags.DEFINE_float("initial_loss_scale", defaults["initial_loss_scale"],
                     "--mixed_precision=float16: the first dynamic loss scale.",
                     lower_bound=1.0)
  flags.DEFINE_integer("loss_scale_growth_steps", defaults["loss_scale_growth_steps"],
                       "--mixed_precision=float16: the loss scale doubles after this "
                       "many applied steps in a row.", lower_bound=1)
  flags.DEFINE_enum("select", defaults["select"], ["best", "last"], "Weights for the "
                    "final test figure, metrics.json and the export: those of the "
                    "best validation figure, or the last.")
  _require_finite("learning_rate", "l2_coeff", "clip_norm", "ema_decay",
                  "initial_loss_scale", "decay_fraction")


def define_run_flags():
  """The length, cadence and outputs of a training run (train.py's, also read by the
  benchmarks, so that one flagfile serves both)."""
  defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
  flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs, metrics.json, "
                      "export/ SavedModel. Re-running with the same directory resumes.")
  flags.DEFINE_integer("train_steps", defaults["train_steps"],
                       "Optimizer steps in all.", lower_bound=1)
  flags.DEFINE_float("train_minutes", defaults["train_minutes"], "Wall-clock budget of "
                     "the training loop in minutes (0: none; one host): training ends "
                     "when it runs out (or at --train_steps) and --decay ends with it. "
                     "A resumed run gets the budget afresh.", lower_bound=0.0)
  flags.DEFINE_integer("checkpoint_every", defaults["checkpoint_every"],
                       "Steps between checkpoints.", lower_bound=1)
  flags.DEFINE_integer("eval_every", defaults["eval_every"], "Steps between validation "
                       "evaluations (0: only at the end); they pick the best weights.",
                       lower_bound=0)
  flags.DEFINE_integer("eval_images", defaults["eval_images"], "Validation images in "
                       "periodic evaluations (the same each time; 0: the whole split).",
                       lower_bound=0)
  flags.DEFINE_integer("eval_batch_size", defaults["eval_batch_size"],
                       "Evaluation batch size.", lower_bound=1)
  flags.DEFINE_integer("log_every", defaults["log_every"],
                       "Steps between TensorBoard scalars.", lower_bound=1)
  flags.DEFINE_bool("export", defaults["export"],
                    "Export a SavedModel to model_dir/export at the end.")
  _require_finite("train_minutes")


def define_precision_flag(default):
  flags.DEFINE_enum("mixed_precision", default, list(COMPUTE_DTYPES),
                    "bfloat16 / float16: run the s/t networks in that type (float16 "
                    "with dynamic loss scaling; the flow's "
                    "arithmetic, log-dets and loss stay float32).")


def _require_finite(*names):
  """absl rejects NaN and infinite values of these float flags in one line."""
  for name in names:
    flags.register_validator(name, lambda value: value is None or math.isfinite(value),
                             message=f"--{name} must be a finite number")


def register_model_validators():
  """Image sides must fit the scales: checked at flag parsing, before any work."""

  def sides_fit(values):
    if values["image_size"]:
      try:
        shape = data.image_folder.parse_size(values["image_size"])
      except ValueError as e:
        raise flags.ValidationError(
            messages.as_flags(str(e), messages.program_flag_names())) from None
    elif values["dataset"] in data.DATASET_NAMES:
      shape = data.get_dataset_info(values["dataset"]).image_shape
    else:  # a tfds set's shape is known once its builder is read (later)
      return True
    what = (f"--image_size={values['image_size']}" if values["image_size"] else
            f"--dataset={values['dataset']}")
    problem = model_config_lib.scales_problem(shape, values["num_scales"])
    if problem:
      raise flags.ValidationError(f"{what}: {problem} (--num_scales).")
    return True

  flags.register_multi_flags_validator(["dataset", "image_size", "num_scales"],
                                       sides_fit)


def model_config_from_flags():
  """The RealNVPConfig of the flags, for the images the data flags name (a folder is
  decoded and a tfds set prepared here, once per process)."""
  info = trainer_lib.resolve_data(train_config_from_flags())
  if FLAGS.class_conditional:
    data.require_labels(info)
  return RealNVPConfig(
      image_shape=info.image_shape, num_levels=info.num_levels,
      num_scales=FLAGS.num_scales, num_res_blocks=FLAGS.num_res_blocks,
      num_filters=FLAGS.num_filters, use_batch_norm=FLAGS.use_batch_norm,
      batch_norm_momentum=FLAGS.batch_norm_momentum, logit_alpha=FLAGS.logit_alpha,
      compute_dtype=FLAGS.mixed_precision,
      num_classes=info.num_classes if FLAGS.class_conditional else 0,
      class_embedding_dim=FLAGS.class_embedding_dim, dropout_rate=FLAGS.dropout_rate)


def train_config_from_flags(config_class=TrainConfig):
  """A config dataclass (TrainConfig by default) filled from the flags of the same
  names."""
  values = {f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(config_class)
            if f.name in FLAGS}
  if "channels" in values:
    values["channels"] = int(values["channels"])
  if values.get("image_dir"):  # --image_dir names the images; --dataset is ignored
    values["dataset"] = data.IMAGE_DIR
  return config_class(**values)
