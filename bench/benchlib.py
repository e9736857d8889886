"""Helpers shared by the benchmark scripts: configs, machine description, memory.

The scripts run with the package installed (`pip install -e .`) as
`python bench/NAME.py`; Python puts this folder on the path, so they import this
module by name.
"""

import math
import os
import platform
import resource

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The benchmark configs. "bench": 28x28x1, 2 scales, 4 blocks, 32 filters (the config
# the reference PyTorch code was measured on); "cifar10": the paper's CIFAR-10 model.
CONFIGS = {
    "bench": dict(dataset="mnist", image_shape=(28, 28, 1), num_scales=2,
                  num_res_blocks=4, num_filters=32),
    "cifar10": dict(dataset="cifar10", image_shape=(32, 32, 3), num_scales=2,
                    num_res_blocks=8, num_filters=64),
    # A small model for 64x64x3 images (an image folder at --image_size=64): its
    # step is the fastest a 64x64x3 pipeline has to keep up with here.
    # The quickstart's model (configs/quickstart.cfg) and the 16-filter MNIST model
    # of the results (3 scales, 2 blocks): steps short enough for the host's share of
    # a step to show.
    # The tests' model: seconds, not minutes, for a check of the machinery.
    "smoke": dict(dataset="digits", image_shape=(8, 8, 1), num_scales=1,
                  num_res_blocks=1, num_filters=4, num_levels=17),
    "quickstart": dict(dataset="digits", image_shape=(8, 8, 1), num_scales=2,
                       num_res_blocks=2, num_filters=16, num_levels=17),
    "mnist16": dict(dataset="mnist", image_shape=(28, 28, 1), num_scales=3,
                    num_res_blocks=2, num_filters=16),

    "image64": dict(dataset="celeb_a", image_shape=(64, 64, 3), num_scales=4,
                    num_res_blocks=2, num_filters=32),
}


# configs/mnist_fast.cfg's model, under that name (the file trains it in bfloat16:
# pass --mixed_precision=bfloat16 as well).
CONFIGS["mnist_fast"] = CONFIGS["mnist16"]


def config(name, precision="float32", num_classes=0):
  """(dataset name, RealNVPConfig) of the benchmark config `name` (class-conditional
  with `num_classes` > 0)."""
  from realnvp_tf.model.config import RealNVPConfig  # pylint: disable=g-import-not-at-top

  spec = dict(CONFIGS[name])
  dataset = spec.pop("dataset")
  return dataset, RealNVPConfig(**spec, compute_dtype=precision,
                                num_classes=num_classes)


def random_image_training(model_config, dataset, batch_size, seed, model_dir,
                          strategy=None):
  """The library's training step on random images in [0, K): (trainer, iterator).

  `trainer.step_fn(iterator, n)` is n full steps (forward in training mode, log-det,
  L2, backward, clipping, Adam, non-finite check) under `strategy` (by default one
  CPU device), fed from a distributed tf.data iterator as in training; every step
  sees the same batch.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from realnvp_tf import training  # pylint: disable=g-import-not-at-top

  info = None
  if model_config.conditional:  # random labelled images stand in for the dataset
    info = random_labelled_data(model_config, batch_size, seed)
    dataset = info.name
  trainer = training.Trainer(
      model_config, training.TrainConfig(dataset=dataset, batch_size=batch_size,
                                         export=False, seed=seed),
      model_dir=model_dir,
      strategy=strategy or tf.distribute.MirroredStrategy(["/cpu:0"]),
      dataset_info=info)
  images = tf.random.stateless_uniform((batch_size,) + model_config.image_shape,
                                       [seed, 0], 0.0, float(model_config.num_levels))
  batch = images
  if model_config.conditional:
    batch = (images, tf.range(batch_size) % model_config.num_classes)
  iterator = iter(trainer.strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat()))
  return trainer, iterator


def random_labelled_data(model_config, count, seed):
  """A `data.from_tf_data` set of `count` random uint8 images per split with labels
  0..n-1 in turn (a class-conditional Trainer reads the training label counts)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from realnvp_tf import data  # pylint: disable=g-import-not-at-top

  shape, classes = model_config.image_shape, model_config.num_classes
  images = tf.random.stateless_uniform((count,) + shape, [seed, 2], 0,
                                       model_config.num_levels, tf.int32)
  split = tf.data.Dataset.from_tensor_slices(
      (tf.cast(images, tf.uint8), tf.range(count) % classes))
  return data.from_tf_data(split, None, split, shape, model_config.num_levels,
                           num_classes=classes)


def peak_rss_mb():
  """Peak resident set size of this process so far (ru_maxrss), in MB (2**20 bytes).

  Linux reports ru_maxrss in KiB. It covers everything the process ever held at once:
  the Python interpreter, the TensorFlow runtime and its kernels, every model, optimizer
  slot, traced graph and buffer allocated so far (not child processes).
  """
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
  """Resident set size now (VmRSS), in MB, or NaN where /proc is unavailable."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return float("nan")


def _cpu_model_and_flags():
  model, flags = None, set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
          model = value.strip()
        elif key == "flags" and not flags:
          flags = set(value.split())
  except OSError:
    pass
  return model or platform.processor() or "unknown", flags


def machine_info():
  """nproc, CPU model, a few ISA flags, load average and library versions."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top

  model, flags = _cpu_model_and_flags()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  try:
    load = [round(x, 2) for x in os.getloadavg()]
  except OSError:
    load = None
  return {
      "nproc": usable,
      "cpu_count": os.cpu_count(),
      "cpu_model": model,
      "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                   "avx512_vnni", "fma"}),
      "load_average_at_start": load,
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
      "tensorflow_probability": tfp.__version__,
      "keras": keras.__version__,
      "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
      "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
  }


def run(main):
  """`realnvp_tf.apps.process.run_main(main)`: absl's app.run, then the end of the
  process without the interpreter's teardown, whose garbage collection alone took
  20-40 s with a traced training step alive (seen in gdb: Py_FinalizeEx ->
  gc_collect_main)."""
  from realnvp_tf.apps import process  # pylint: disable=g-import-not-at-top
  process.run_main(main)


def clean_json(value, digits=5):
  """`value` with floats rounded and non-finite ones (not JSON) replaced by None."""
  if isinstance(value, dict):
    return {k: clean_json(v, digits) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [clean_json(v, digits) for v in value]
  if isinstance(value, float):
    return round(value, digits) if math.isfinite(value) else None
  return value


# The reference convolution: a 3x3 conv 64->64 on [64, 14, 14, 64], forward and
# backward, at the speed this machine's convolutions reach (see docs/performance.md).
CONV_INPUT = (64, 14, 14, 64)
CONV_FILTERS = 64
CONV_KERNEL = 3


def conv_step(tf, dtype, input_shape, kernel_shape):
  """A convolution's training step: (step, FLOPs per call, x, kernel, upstream).

  `step()` returns `sum(conv(x) * upstream)` and its gradients with respect to x and
  the kernel: forward and backward (input and filter gradients) all run. (Asking the
  tape for `gradient(y, output_gradients=upstream)` instead lets grappler prune the
  forward conv, which nothing reads: the step would run 2/3 of the counted work.)
  """
  batch, height, width, _ = input_shape
  k_h, k_w, c_in, c_out = kernel_shape
  x = tf.cast(tf.random.stateless_normal(input_shape, [1, 2]), dtype)
  kernel = tf.Variable(tf.cast(tf.random.stateless_normal(
      kernel_shape, [3, 4], stddev=0.05), dtype))
  upstream = tf.cast(tf.random.stateless_normal((batch, height, width, c_out), [5, 6]),
                     dtype)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
      loss = tf.reduce_sum(tf.cast(y * upstream, tf.float32))
    dx, dk = tape.gradient(loss, [x, kernel])
    return loss, dx, dk

  flops = 3 * 2 * batch * height * width * k_h * k_w * c_in * c_out
  return step, flops, x, kernel, upstream


def reference_conv(tf, dtype):
  """The reference convolution's `conv_step`."""
  return conv_step(tf, dtype, CONV_INPUT,
                   (CONV_KERNEL, CONV_KERNEL, CONV_INPUT[-1], CONV_FILTERS))
