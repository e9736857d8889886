"""Throughput, memory and FLOP utilisation of RealNVP training, evaluation and sampling.

Builds the bench config (28x28x1, 2 scales, 4 residual blocks, 32 filters,
batch 64) or, with --config=cifar10, the paper's CIFAR-10 model (32x32x3, 2 scales,
8 blocks, 64 filters), and times on random images in [0, 256) (no data needed):

- training: the library's own step, `training.Trainer.train_step` (forward in training
  mode, log-det, L2, backward, all-reduce, global-norm clipping, Adam, non-finite
  check) under a one-device MirroredStrategy, fed from a distributed tf.data iterator;
  the loss is fetched after every step, as `Trainer.fit` does;
- evaluation: `tf.function(flow.log_prob)` on --eval_batch_size images, inference
  mode (batch-norm moving averages), no gradients;
- sampling: `tf.function(lambda: flow.sample(n))`, n = --sample_batch_size;
- a 3x3 convolution 64->64 on [64, 14, 14, 64], forward + backward (input and filter
  gradients), in a tf.function: what this machine's convolutions reach in this process,
  measured first, after each training timing, and at the end (on a shared machine
  they differ when the load changes during the run).

Every figure is the median over --repeats timings, each the mean over --steps calls,
after --warmup calls (the first traces). FLOPs are analytic, convolutions only: for
every conv of every coupling's s/t network, 2 * H * W * k * k * Cin * Cout per image
at the resolution the code runs it (checkerboard couplings at full resolution, on
the masked image and the mask); training ~ 3x forward. As a check, the Conv2D ops of
the traced log_prob graph are counted too (TF's per-op flops statistics), with the
graph's total over all ops. Utilisation = achieved training GFLOP/s / the
convolution's GFLOP/s (in the training precision), the median over the training
timings of each one's ratio to the convolution timed right after it; also against the
best convolution timing of the run.

Prints one JSON line. Usage:

  python bench/throughput.py                      # bench config, full timing
  python bench/throughput.py --config=cifar10
  python bench/throughput.py --quick              # smoke: 2 warm-up, 1 repeat of 2
  python bench/throughput.py --mixed_precision=bfloat16
  python bench/throughput.py --num_classes=10     # the class-conditional model
  python bench/throughput.py --config=quickstart --steps_per_loop=10
  python bench/throughput.py --config=mnist_fast --mixed_precision=bfloat16 \
      --batch_sizes=16,32,64,128 --profile        # what a step's fixed cost is made of

`ops_per_step` is the number of TensorFlow ops one training step executes (one call
under the profiler, a loop body counted once per iteration); `--profile` adds
`profile_by_op_type` (count and milliseconds per op type in that call, the slowest
first) and `--batch_sizes` adds `step_s_by_batch_size`, `fixed_cost_s`,
`per_image_s` and `fixed_cost_fraction` (of the --batch_size step); both together
add `fixed_cost_ms_by_op_type`, the same fit per op type (kernel milliseconds summed
over threads, so the types' figures add up to more than the step's wall time).
"""

import dataclasses
import json
import statistics
import tempfile
import time

from absl import app
from absl import flags

import benchlib
from realnvp_tf.apps import cli
from realnvp_tf.model import flops
import step_cost

FLAGS = flags.FLAGS

flags.DEFINE_enum("config", "bench", list(benchlib.CONFIGS),
                  "bench: 28x28x1, 2 scales, 4 blocks, 32 filters; "
                  "cifar10: 32x32x3, 2 scales, 8 blocks, 64 filters (the paper's).")
cli.define_precision_flag("float32")
flags.DEFINE_integer("batch_size", 64, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 256, "Evaluation (log_prob) batch size.")
flags.DEFINE_integer("sample_batch_size", 256, "Samples per sampling call.")
flags.DEFINE_integer("warmup", 2, "Untimed calls before timing (the first traces).")
flags.DEFINE_integer("repeats", 5, "Timings per figure; the median is reported.")
flags.DEFINE_integer("steps", 2, "Calls per timing (each timing is their mean).")
flags.DEFINE_integer("conv_steps", 30, "Calls per timing of the reference convolution.")
flags.DEFINE_bool("quick", False, "CI smoke: 2 warm-up calls, 1 timing of 2 calls "
                  "(overrides --warmup, --repeats, --steps, --conv_steps).")
flags.DEFINE_integer("seed", 0, "Seed of the random images.")
flags.DEFINE_bool("deterministic", False, "Time with TensorFlow's op determinism on "
                  "(what train.py --deterministic turns on).")
flags.DEFINE_integer("steps_per_loop", 1, "Training steps per call of the step "
                     "function (the training figures are per step).", lower_bound=1)
flags.DEFINE_integer("num_classes", 0, "Time the class-conditional model with this "
                     "many classes (random labels; 0: the unconditional model).",
                     lower_bound=0)
flags.DEFINE_list("batch_sizes", [], "Also time the training step at these batch "
                  "sizes (e.g. 16,32,64,128) and fit step time = fixed_cost_s + "
                  "per_image_s * batch.")
flags.DEFINE_bool("profile", False, "Also report the time per op type of one training "
                  "step (TensorFlow's profiler).")
flags.register_validator(
    "batch_sizes", lambda v: not v or (len(set(v)) >= 2 and all(
        s.isdigit() and int(s) >= 1 for s in v)),
    message="--batch_sizes takes two or more distinct integers >= 1, e.g. 16,32,64")

def conv_only_step_seconds(tf, flow, batch, dtype, repeats, steps):
  """Seconds of the model's convolutions alone: every s/t conv forward + backward.

  Each distinct conv shape is timed on its own (at the training batch, as the
  reference conv is) and weighted by its count: the training step's time if nothing
  but its convolutions cost anything, at these shapes' own efficiency.
  """
  total = 0.0
  for (height, width, *kernel_shape), count in flops.model_conv_shapes(flow).items():
    step, _, _, _, _ = benchlib.conv_step(
        tf, dtype, (batch, height, width, kernel_shape[2]), tuple(kernel_shape))
    # Bound to this iteration's step (timed() makes every call before it returns).
    seconds, _, _ = timed(lambda step=step: step()[0].numpy(), 2, repeats, steps)
    total += count * seconds
  return total


def timed(fn, warmup, repeats, steps, after_first=None, after_each=None):
  """(median seconds per call, all timings, seconds of the first call).

  `after_first()` runs once after the first (tracing) call, untimed;
  `after_each()` after each timing, untimed.
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  if after_first is not None:
    after_first()
  for _ in range(warmup - 1):
    fn()
  timings = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    timings.append((time.perf_counter() - start) / steps)
    if after_each is not None:
      after_each()
  return statistics.median(timings), timings, first


def conv_benchmark(reference, warmup, repeats, steps):
  """GFLOP/s of a `conv_step`, forward + backward: (median, best) of the repeats."""
  step, flops, _, _, _ = reference
  seconds, all_seconds, _ = timed(lambda: step()[0].numpy(), warmup, repeats, steps)
  return flops / seconds / 1e9, flops / min(all_seconds) / 1e9


def _fixed_cost(tf, model_config, dataset, model_dir, main_step, warmup, repeats,
                steps):
  """The training step timed at each --batch_sizes (--batch_size's is `main_step`:
  the main timing's seconds and profile) and the line fitted through them; with
  --profile, the fit per op type too (of its kernel time, summed over threads)."""
  import os  # pylint: disable=g-import-not-at-top
  seconds, profiles = {FLAGS.batch_size: main_step[0]}, {FLAGS.batch_size: main_step[1]}
  for size in sorted({int(s) for s in FLAGS.batch_sizes} - {FLAGS.batch_size}):
    trainer, iterator = benchlib.random_image_training(
        model_config, dataset, size, FLAGS.seed, os.path.join(model_dir, str(size)))

    def call(trainer=trainer, iterator=iterator):
      return float(trainer.step_fn(iterator, FLAGS.steps_per_loop).bits[-1])

    seconds[size] = timed(call, warmup, repeats, steps)[0] / FLAGS.steps_per_loop
    if FLAGS.profile:
      profiles[size] = step_cost.executed_ops(tf, call)[1]
    trainer.close()
  sizes = sorted(seconds)
  fixed, per_image = step_cost.fit_fixed_cost(sizes, [seconds[b] for b in sizes])
  result = {"step_s_by_batch_size": {str(b): seconds[b] for b in sizes},
            "fixed_cost_s": fixed, "per_image_s": per_image,
            "fixed_cost_fraction": fixed / seconds[FLAGS.batch_size]}
  if FLAGS.profile:
    by_type = {}
    for name in set().union(*profiles.values()):
      ms = [1e3 * profiles[b].get(name, (0, 0.0))[1] / FLAGS.steps_per_loop
            for b in sizes]
      by_type[name] = step_cost.fit_fixed_cost(sizes, ms)[0]
    result["fixed_cost_ms_by_op_type"] = dict(
        sorted(by_type.items(), key=lambda item: -item[1]))
  return result


def main(argv):
  del argv
  t_start = time.perf_counter()
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  import realnvp_tf  # pylint: disable=g-import-not-at-top
  from realnvp_tf.apps import process  # pylint: disable=g-import-not-at-top

  tf.get_logger().setLevel("ERROR")
  # As train.py does, before TensorFlow starts its threads.
  arenas_limited = process.limit_malloc_arenas()
  if FLAGS.deterministic:  # as train.py --deterministic (the weights are seeded there)
    tf.config.experimental.enable_op_determinism()
  if FLAGS.quick:
    warmup, repeats, steps, conv_steps = 2, 1, 2, 2
  else:
    warmup, repeats, steps, conv_steps = (FLAGS.warmup, FLAGS.repeats, FLAGS.steps,
                                          FLAGS.conv_steps)
  if min(warmup, repeats, steps, conv_steps) < 1:
    raise app.UsageError("--warmup, --repeats, --steps and --conv_steps must be >= 1.")

  dataset, model_config = benchlib.config(FLAGS.config, FLAGS.mixed_precision,
                                          FLAGS.num_classes)
  result = {"benchmark": "throughput", "config": FLAGS.config,
            "mixed_precision": FLAGS.mixed_precision,
            "model_config": dataclasses.asdict(model_config),
            "batch_size": FLAGS.batch_size, "steps_per_loop": FLAGS.steps_per_loop,
            "deterministic": FLAGS.deterministic,
            "eval_batch_size": FLAGS.eval_batch_size,
            "sample_batch_size": FLAGS.sample_batch_size, "warmup": warmup,
            "repeats": repeats, "steps": steps, "quick": FLAGS.quick,
            "machine": benchlib.machine_info(), "malloc_arenas_limited": arenas_limited}
  rss = {"after_import": benchlib.peak_rss_mb()}

  # The reference convolution first: small, and the machine's ceiling.
  # Measured again at the end: on a shared machine the two differ when the load
  # changed during the run.
  conv_dtype = tf.as_dtype(FLAGS.mixed_precision)
  reference = benchlib.reference_conv(tf, conv_dtype)
  float_reference = (reference if conv_dtype == tf.float32 else
                     benchlib.reference_conv(tf, tf.float32))
  conv_rate, conv_best = conv_benchmark(float_reference, warmup, repeats, conv_steps)
  result["conv_gflops_per_s"] = conv_rate
  if conv_dtype != tf.float32:
    result[f"conv_gflops_per_s_{conv_dtype.name}"], conv_best = conv_benchmark(
        reference, warmup, repeats, conv_steps)
  rss["after_conv"] = benchlib.peak_rss_mb()

  shape = model_config.image_shape
  levels = float(model_config.num_levels)
  with tempfile.TemporaryDirectory(prefix="realnvp_bench_") as model_dir:
    # Training: the library's own distributed step.
    trainer, iterator = benchlib.random_image_training(
        model_config, dataset, FLAGS.batch_size, FLAGS.seed, model_dir)

    def train_call():  # one call of --steps_per_loop steps
      out = trainer.step_fn(iterator, FLAGS.steps_per_loop)
      return float(out.bits[-1]), bool(out.finite[-1])

    # The reference conv is timed again after each training timing, so that each
    # training rate has a reference measured under the same machine load.
    paired_conv = []

    def time_reference_conv():
      paired_conv.append(conv_benchmark(reference, 1, 1, conv_steps)[0])

    train_s, train_all, train_first = timed(
        train_call, warmup, repeats, steps,
        after_first=lambda: rss.update(after_first_train_step=benchlib.peak_rss_mb()),
        after_each=time_reference_conv)
    # Seconds per step.
    train_s, train_all = (train_s / FLAGS.steps_per_loop,
                          [t / FLAGS.steps_per_loop for t in train_all])
    last_bits, last_finite = train_call()
    rss["after_train"] = benchlib.peak_rss_mb()
    ops, by_type = step_cost.executed_ops(tf, train_call)
    result["ops_per_step"] = ops / FLAGS.steps_per_loop
    if FLAGS.profile:
      result["profile_by_op_type"] = {
          name: {"count": count, "ms": 1e3 * seconds} for name, (count, seconds) in
          sorted(by_type.items(), key=lambda item: -item[1][1])}
    if FLAGS.batch_sizes:
      result.update(_fixed_cost(tf, model_config, dataset, model_dir,
                                (train_s, by_type), warmup, repeats, steps))

  # Evaluation and sampling on a flow built outside any strategy, as eval.py does.
  flow = realnvp_tf.build_realnvp(model_config)
  eval_images = tf.random.stateless_uniform((FLAGS.eval_batch_size,) + shape,
                                            [FLAGS.seed, 1], 0.0, levels)
  eval_labels = sample_labels = None
  if model_config.conditional:
    eval_labels = tf.range(FLAGS.eval_batch_size) % model_config.num_classes
    sample_labels = tf.range(FLAGS.sample_batch_size) % model_config.num_classes
  log_prob = tf.function(flow.log_prob if eval_labels is None else
                         lambda x: realnvp_tf.log_prob(flow, x, eval_labels))
  eval_s, eval_all, eval_first = timed(
      lambda: log_prob(eval_images).numpy(), warmup, repeats, steps,
      after_first=lambda: rss.update(after_first_eval=benchlib.peak_rss_mb()))
  eval_finite = bool(np.all(np.isfinite(log_prob(eval_images).numpy())))
  rss["after_eval"] = benchlib.peak_rss_mb()

  sample = tf.function(lambda: flow.sample(FLAGS.sample_batch_size, seed=FLAGS.seed)
                       if sample_labels is None else flow.sample(
                           FLAGS.sample_batch_size, seed=FLAGS.seed,
                           bijector_kwargs={"labels": sample_labels}))
  sample_s, sample_all, sample_first = timed(
      lambda: sample().numpy(), warmup, repeats, steps,
      after_first=lambda: rss.update(after_first_sample=benchlib.peak_rss_mb()))
  sample_finite = bool(np.all(np.isfinite(sample().numpy())))
  rss["after_sample"] = benchlib.peak_rss_mb()

  conv_end, conv_end_best = conv_benchmark(reference, warmup, repeats, conv_steps)

  fwd_flops, by_mask, num_couplings = flops.forward_flops(flow)
  # The product's peak: training, evaluation and sampling (the diagnostics below only
  # add to it).
  peak_rss = benchlib.peak_rss_mb()
  conv_only_s = conv_only_step_seconds(tf, flow, FLAGS.batch_size, conv_dtype, repeats,
                                       max(conv_steps // 3, 1))
  reference_after_conv_only, _ = conv_benchmark(reference, warmup, repeats, conv_steps)
  graph_conv_flops, graph_all_flops = flops.graph_forward_flops(flow)
  train_rate = FLAGS.batch_size / train_s
  eval_rate = FLAGS.eval_batch_size / eval_s
  sample_rate = FLAGS.sample_batch_size / sample_s
  train_gflops = 3 * fwd_flops * train_rate / 1e9
  train_flops = 3 * fwd_flops * FLAGS.batch_size
  paired = [train_flops / t / 1e9 / conv
            for t, conv in zip(train_all, paired_conv, strict=True)]

  def count(variables):
    return int(sum(np.prod(v.shape) for v in variables))

  result.update({
      "parameters": count(flow.trainable_variables),
      "trainable_variables": len(flow.trainable_variables),
      "non_trainable_parameters": count(flow.non_trainable_variables),
      "couplings": num_couplings,
      "forward_gflop_per_image": fwd_flops / 1e9,
      "forward_gflop_per_image_by_mask": {k: v / 1e9 for k, v in by_mask.items()},
      "forward_gflop_per_image_graph_convs": graph_conv_flops / 1e9,
      "forward_gflop_per_image_graph_all_ops": graph_all_flops / 1e9,
      "training_gflop_per_image": 3 * fwd_flops / 1e9,
      "train_images_per_s": train_rate,
      "train_images_per_s_all": [FLAGS.batch_size / t for t in train_all],
      "eval_images_per_s": eval_rate,
      "eval_images_per_s_all": [FLAGS.eval_batch_size / t for t in eval_all],
      "sample_images_per_s": sample_rate,
      "sample_images_per_s_all": [FLAGS.sample_batch_size / t for t in sample_all],
      "train_gflops_per_s": train_gflops,
      "eval_gflops_per_s": fwd_flops * eval_rate / 1e9,
      "sample_gflops_per_s": fwd_flops * sample_rate / 1e9,
      # Median over the timings of (training GFLOP/s / the reference conv's GFLOP/s
      # timed right after it), the reference in the training precision.
      "utilisation_train": statistics.median(paired),
      "utilisation_train_all": paired,
      "conv_gflops_per_s_paired": paired_conv,
      "utilisation_reference": (
          "reference conv (3x3, 64->64, [64,14,14,64], forward + backward) in "
          f"{conv_dtype.name}, timed after each training timing"),
      "conv_gflops_per_s_at_end": conv_end,
      "conv_gflops_per_s_best": max(conv_best, conv_end_best),
      "utilisation_train_vs_best_conv": train_gflops / max(conv_best, conv_end_best),
      # The ceiling: the model's own convolutions timed alone (no batch norm, no
      # elementwise ops, no optimizer), against the reference conv timed after them.
      "conv_only_train_images_per_s": FLAGS.batch_size / conv_only_s,
      "conv_only_utilisation": (3 * fwd_flops * FLAGS.batch_size / conv_only_s / 1e9
                                / reference_after_conv_only),
      "train_time_in_convs": conv_only_s / train_s,
      "first_call_s": {"train": train_first, "eval": eval_first,
                       "sample": sample_first},
      "train_bits_per_dim_last": last_bits,
      "finite": {"train": last_finite, "eval": eval_finite, "sample": sample_finite},
      "peak_rss_mb": peak_rss,
      "peak_rss_mb_with_diagnostics": benchlib.peak_rss_mb(),
      "peak_rss_mb_by_phase": rss,
      "rss_mb_now": benchlib.current_rss_mb(),
      "peak_rss_note": ("ru_maxrss of this one process: TF runtime, the training "
                        "model with optimizer state, the evaluation/sampling model, "
                        "the reference conv and all traced graphs, up to the end of "
                        "sampling (peak_rss_mb_with_diagnostics: after the "
                        "conv-only timings too); peak_rss_mb_by_phase shows which "
                        "phase set it"),
      "total_s": time.perf_counter() - t_start,
  })
  print(json.dumps(benchlib.clean_json(result), allow_nan=False), flush=True)


if __name__ == "__main__":
  benchlib.run(main)
