"""Runs config files through train.py's main in one process, each to its own run
directory: `python config_runs_main.py OUT_DIR NUM_EXAMPLES CONFIG... [--FLAG=V...]`.

Each config file is read by train.py's own flag parsing, followed by the given flags
(the test's shrunken sizes), so every other value in the file reaches the run as the
file says. tensorflow-datasets sets are mocked (`tfds.testing.mock_data`,
NUM_EXAMPLES random images a split). Each run leaves OUT_DIR/NAME.
"""

import os
import sys
import time

from absl import flags
import tensorflow_datasets as tfds

# train.py's module reads sys.argv[0] when it defines its flags.
ARGS = sys.argv[1:]
sys.argv = ["train.py"]
from realnvp_tf.apps import train as train_app  # noqa: E402
from realnvp_tf.data import tfds_fetch  # noqa: E402


def main(out_dir, num_examples, args):
  configs = [arg for arg in args if not arg.startswith("--")]
  overrides = [arg for arg in args if arg.startswith("--")]
  # Under mock_data tfds prepares nothing, so "online" is harmless.
  tfds_fetch.network_available = lambda url, timeout=0: True
  tfds_fetch.check_prepare_prerequisites = lambda info: None
  with tfds.testing.mock_data(num_examples=num_examples):
    for path in configs:
      name = os.path.splitext(os.path.basename(path))[0]
      start = time.perf_counter()
      flags.FLAGS.unparse_flags()
      flags.FLAGS(["train.py", f"--flagfile={path}", *overrides,
                   f"--model_dir={os.path.join(out_dir, name)}"])
      train_app.main([])
      print(f"ran {name}", flush=True)
      print(f"took {name} {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
  main(ARGS[0], int(ARGS[1]), ARGS[2:])
