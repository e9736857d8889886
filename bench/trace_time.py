"""Seconds to trace the flow's log_prob (inference and training mode) and to run it
once eagerly, for a benchmark config: the fixed cost every new process pays before
its first step, evaluation or export.

  python bench/trace_time.py --config=image64

Prints one JSON line (seconds and the traced graphs' op counts).
"""

import json
import time

from absl import flags

import benchlib

flags.DEFINE_enum("config", "image64", list(benchlib.CONFIGS), "Benchmark config.")
FLAGS = flags.FLAGS


def _seconds(fn):
  """(seconds fn() took, rounded to ms, its result)."""
  start = time.perf_counter()
  out = fn()
  return round(time.perf_counter() - start, 3), out


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from realnvp_tf.model import flow as flow_lib  # pylint: disable=g-import-not-at-top

  _, model_config = benchlib.config(FLAGS.config)
  flow = flow_lib.build_realnvp(model_config)
  shape = tuple(model_config.image_shape)
  images = tf.random.uniform((2,) + shape, 0, model_config.num_levels - 1, seed=0)
  spec = tf.TensorSpec((None,) + shape, tf.float32)
  out = dict(config=FLAGS.config, machine=benchlib.machine_info())
  out["eager_first_call_s"], _ = _seconds(lambda: flow_lib.log_prob(flow, images, None))
  for name, training in (("inference", False), ("training", True)):
    seconds, graph = _seconds(lambda t=training: tf.function(
        lambda x: flow_lib.log_prob(flow, x, None, training=t)).get_concrete_function(
            spec).graph)
    out[f"trace_{name}_s"] = seconds
    out[f"ops_{name}"] = len(graph.get_operations())
  print(json.dumps(out))


if __name__ == "__main__":
  benchlib.run(main)
