"""A self-check to run on a GPU/TPU (or CPU) machine before a long training job.

Lists the devices and the distribution strategy `train.py` would choose, then, on
random images through the library's own training step under that strategy:

- for each --precisions (s/t networks in float32, bfloat16, float16) and each
  --steps_per_loop: images/s of training (after a call that traces);
- each precision's bits/dim against float32's: the weights of the float32 run,
  evaluated with the other precision's networks on one batch (training-mode batch
  statistics), must agree within the precision's tolerance (the JSON line also gives
  the mean absolute difference image by image, which a batch's mean can hide);
- where two devices exist (GPUs, or --logical_cpus=2 to try the path on a CPU): from
  the same weights on the same global batch, the gradient of one float32 step on
  two devices must equal that on one (its norm before clipping and Adam's first
  moments after the step, not weights after Adam steps: Adam's update does not
  change when every gradient is off by the same factor, as a replica reduction that
  averages instead of summing would make it), and so must the weights after a few
  steps.

A precision a device cannot run (bfloat16 on GPUs before Ampere, say) is reported
as unsupported, not as a failure. Prints one JSON line; exits 1 when a check fails
(`--tolerance_scale=0` demands exact agreement, which no reduced precision gives:
a way to see a failing check). `--save_inputs=DIR` keeps the weights and images the
precision checks evaluated (inputs.npz) to re-check the figures elsewhere.

  python bench/device_check.py                              # bench config
  python bench/device_check.py --config=smoke --steps=3     # seconds, any machine
"""

import contextlib
import json
import os
import sys
import tempfile
import time

from absl import flags
import numpy as np

import benchlib

FLAGS = flags.FLAGS

flags.DEFINE_enum("config", "bench", list(benchlib.CONFIGS), "The model (benchlib).")
flags.DEFINE_list("precisions", ["float32", "bfloat16", "float16"],
                  "Precisions of the s/t networks to run.")
flags.DEFINE_list("steps_per_loop", ["1", "10"], "Steps per call to time each "
                  "precision at.")
flags.DEFINE_integer("steps", 10, "Timed training steps per setting.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Global batch size.", lower_bound=2)
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many logical "
                     "devices (0: as it is), to try the two-device check without "
                     "GPUs.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the random images.")
flags.DEFINE_float("tolerance_scale", 1.0, "Multiplies every tolerance (0: exact "
                   "agreement).", lower_bound=0.0)
flags.DEFINE_string("save_inputs", None, "A directory to write inputs.npz to: the "
                    "weights (`weight_<i>`, in the flow's variable order) and the "
                    "images the precision checks evaluated.")

flags.register_validator(
    "precisions", lambda values: bool(values) and set(values) <= {
        "float32", "bfloat16", "float16"},
    message="--precisions takes float32, bfloat16 and float16 (comma-separated)")
flags.register_validator(
    "steps_per_loop", lambda values: bool(values) and all(
        v.isdigit() and int(v) > 0 for v in values),
    message="--steps_per_loop takes positive integers (comma-separated)")

# |bits/dim - float32's| allowed for the same weights. bfloat16 keeps 8 mantissa
# bits and float16 11: the s/t outputs differ by about 2**-8 and 2**-11 relative.
TOLERANCE = {"float32": 0.0, "bfloat16": 0.05, "float16": 0.01}
# Two devices against one: the weights' difference after the check's steps relative
# to how far the steps moved them, and the largest gradient difference: of the norm,
# relative to it, and of Adam's first moments after one step, relative to their
# largest entry.
TWO_DEVICE_TOLERANCE = 1e-2
# 1e-4 held on an Intel Xeon; an AMD EPYC (Zen 4) measured 5.4e-3 (oneDNN's kernels
# for a batch of 32 and of 64 round differently). A replica reduction off by a factor
# of 2 gives 0.5.
TWO_DEVICE_GRADIENT_TOLERANCE = 2e-2


def _split_cpu(count):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def _compute_devices(tf):
  """The devices a strategy can use: the accelerators, else the (logical) CPUs."""
  for kind in ("TPU", "GPU"):
    devices = tf.config.list_logical_devices(kind)
    if devices:
      return [d.name for d in devices]
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def _trainer(precision, strategy, model_dir):
  dataset, model_config = benchlib.config(FLAGS.config, precision)
  return benchlib.random_image_training(model_config, dataset, FLAGS.batch_size,
                                        FLAGS.seed, model_dir, strategy=strategy)


def _set_weights(trainer, values):
  for variable, value in zip(trainer.state.flow.variables, values, strict=True):
    variable.assign(value)


def _training_bits(trainer, images):
  """Training-mode bits/dim of each of `images` with the trainer's current weights
  (float64, from the flow's float32 figures)."""
  from realnvp_tf.model import flow as flow_lib  # pylint: disable=g-import-not-at-top
  flow, shape = trainer.state.flow, trainer.model_config.image_shape
  # (A training-mode pass also moves the moving averages; nothing here reads them.)
  log_prob = flow_lib.log_prob(flow, images, None, training=True)
  return flow_lib.bits_per_dim(log_prob, shape).numpy().astype(np.float64)


def _leave_identity(tf, trainer):
  """Random gains for the s/t networks' zero-initialised last convolutions: every
  coupling starts as the identity, whose s = t = 0 any precision computes exactly,
  so the precision checks need weights away from it."""
  for variable in trainer.state.flow.trainable_variables:
    if "gain" in variable.name and not tf.reduce_any(variable != 0):
      variable.assign(tf.random.stateless_normal(variable.shape, [FLAGS.seed, 3], 0.0,
                                                 0.5))


def _steps(trainer, iterator, count):
  """`count` single steps: the trace the float32 timing at N = 1 reuses (a loop of N
  steps is a second trace, about twice as long as the step's)."""
  for _ in range(count):
    trainer.step_fn(iterator, 1)


def _images_per_s(trainer, iterator, steps_per_loop):
  trainer.step_fn(iterator, steps_per_loop)  # traces on the first call
  calls = max(1, -(-FLAGS.steps // steps_per_loop))
  start = time.perf_counter()
  for _ in range(calls):
    out = trainer.step_fn(iterator, steps_per_loop)
  float(out.bits[-1])  # waits for the last step
  return calls * steps_per_loop * FLAGS.batch_size / (time.perf_counter() - start)


def _precision_settings(tf, strategy, reference, start, images, model_dir):
  """Each precision's figures, each starting from the weights `start`."""
  settings, reference_bits = [], _training_bits(reference[0], images)
  for precision in FLAGS.precisions:
    try:
      if precision == "float32":  # the reference itself
        trainer, iterator = reference
      else:
        trainer, iterator = _trainer(precision, strategy, f"{model_dir}/{precision}")
      _set_weights(trainer, start)
      bits = _training_bits(trainer, images)
      rates = {int(n): _images_per_s(trainer, iterator, int(n))
               for n in FLAGS.steps_per_loop}
    except (tf.errors.OpError, ValueError, TypeError) as e:  # no kernel for it here
      settings.append({"precision": precision, "supported": False,
                       "error": str(e).splitlines()[0][:300], "ok": True})
      continue
    tolerance = TOLERANCE[precision] * FLAGS.tolerance_scale
    difference = float(np.mean(bits) - np.mean(reference_bits))
    # Per image as well: the batch's mean can hide differences that cancel (a float16
    # mean once equalled float32's to the last bit while its images differed by up to
    # 2.6e-4).
    image_difference = float(np.mean(np.abs(bits - reference_bits)))
    for steps_per_loop, rate in rates.items():
      settings.append({
          "precision": precision, "supported": True, "steps_per_loop": steps_per_loop,
          "images_per_s": rate, "bits_per_dim": float(np.mean(bits)),
          "bits_per_dim_vs_float32": difference,
          "mean_abs_image_difference_vs_float32": image_difference,
          "tolerance": tolerance, "ok": abs(difference) <= tolerance})
  return settings


def _step_gradients(trainer, iterator):
  """One step of a fresh trainer, and what it saw of its gradient, as the first
  replica holds it: the norm of the all-reduced gradient before clipping, and
  Adam's first moments after it, (1 - beta_1) times the clipped gradient (the
  step's own computation: no trace of its own)."""
  out = trainer.step_fn(iterator, 1)
  local = trainer.strategy.experimental_local_results
  moments = np.concatenate([np.asarray(local(m)[0]).ravel()
                            for m in trainer.state.optimizer.first_moments])
  return float(out.grad_norm[-1]), moments


def _two_devices_vs_one(tf, devices, strategy, start, model_dir):
  """One float32 step's gradient, and the weights after 3 steps, on two devices and
  on one, from the weights `start` on the same global batches."""
  # One strategy per device set (`strategy` where it is one of them): collective
  # keys of two strategies over the same devices would collide.
  by_count = {strategy.num_replicas_in_sync: strategy}
  norms, moments, weights = [], [], []
  for count in (1, 2):
    if count not in by_count:
      by_count[count] = tf.distribute.MirroredStrategy(devices[:count])
    strategy = by_count[count]
    trainer, iterator = _trainer("float32", strategy, f"{model_dir}/devices_{count}")
    _set_weights(trainer, start)
    trainable = [i for i, v in enumerate(trainer.state.flow.variables) if v.trainable]
    norm, moment = _step_gradients(trainer, iterator)
    norms.append(norm)
    moments.append(moment)
    _steps(trainer, iterator, 2)
    weights.append([np.asarray(strategy.experimental_local_results(v)[0])
                    for v in trainer.state.flow.trainable_variables])
  # The norm shows a constant factor even where clipping hides it from the moments;
  # the moments show the direction.
  scale = float(np.max(np.abs(moments[0])))
  gradient_difference = max(
      abs(norms[1] - norms[0]) / norms[0],
      float(np.max(np.abs(moments[1] - moments[0]))) / scale)
  one, two, begin = (np.concatenate([w.ravel() for w in ws])
                     for ws in (*weights, [start[i] for i in trainable]))
  # Where the true gradient is zero (a conv bias before a batch norm), round-off of
  # either summation order steers Adam by up to a learning rate per step: the weights
  # are compared against how far training moved them, not weight by weight.
  relative = float(np.linalg.norm(two - one) / np.linalg.norm(one - begin))
  gradient_tolerance = TWO_DEVICE_GRADIENT_TOLERANCE * FLAGS.tolerance_scale
  tolerance = TWO_DEVICE_TOLERANCE * FLAGS.tolerance_scale
  return {"devices": devices[:2], "steps": 3,
          "max_relative_gradient_difference": gradient_difference,
          "gradient_tolerance": gradient_tolerance,
          "max_abs_weight_difference": float(np.max(np.abs(two - one))),
          "relative_weight_difference": relative, "tolerance": tolerance,
          "ok": gradient_difference <= gradient_tolerance and relative <= tolerance}


def _save_inputs(directory, weights, images):
  os.makedirs(directory, exist_ok=True)
  np.savez(os.path.join(directory, "inputs.npz"), images=np.asarray(images),
           **{f"weight_{i}": value for i, value in enumerate(weights)})


def main(argv):
  del argv
  if FLAGS.logical_cpus:
    _split_cpu(FLAGS.logical_cpus)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from realnvp_tf.training import strategies  # pylint: disable=g-import-not-at-top

  strategy = strategies.make_strategy()
  devices = _compute_devices(tf)
  with tempfile.TemporaryDirectory(prefix="realnvp_device_check_") as model_dir:
    # The float32 weights every check starts from (kept aside: the float32 timings
    # train on).
    reference, iterator = _trainer("float32", strategy, f"{model_dir}/reference")
    _leave_identity(tf, reference)
    _steps(reference, iterator, 3)
    start = [v.numpy() for v in reference.state.flow.variables]
    images = next(iter(reference.strategy.experimental_local_results(
        next(iterator))))
    if FLAGS.save_inputs:
      _save_inputs(FLAGS.save_inputs, start, images)
    settings = _precision_settings(tf, strategy, (reference, iterator), start, images,
                                   model_dir)
    two = (_two_devices_vs_one(tf, devices, strategy, start, model_dir)
           if len(devices) >= 2 else None)
  result = {
      "devices": devices,
      "physical_devices": [d.name for d in tf.config.list_physical_devices()],
      "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
      "config": FLAGS.config, "batch_size": FLAGS.batch_size, "steps": FLAGS.steps,
      "settings": settings, "two_devices_vs_one": two,
      "ok": all(s["ok"] for s in settings) and (two is None or two["ok"]),
      "machine": benchlib.machine_info(),
  }
  print(json.dumps(benchlib.clean_json(result, digits=9)), flush=True)
  if not result["ok"]:
    sys.exit(1)


if __name__ == "__main__":
  with contextlib.suppress(KeyboardInterrupt):
    benchlib.run(main)
