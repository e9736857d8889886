"""One worker of the multi-worker test: trains with train.py's flags, then saves its
final weights (as this worker sees them) for the test to compare."""

import sys

from absl import app
from absl import flags
import numpy as np

sys.argv[0:1] = [sys.argv[0]]
import train  # noqa: E402  (defines the flags)
from realnvp_tf import cli  # noqa: E402
from realnvp_tf import training  # noqa: E402

flags.DEFINE_string("weights_out", None, "Where to save this worker's weights.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  trainer = training.Trainer(cli.model_config_from_flags(),
                             cli.train_config_from_flags(training.TrainConfig),
                             FLAGS.model_dir)
  trainer.fit(progress=False)
  np.savez(FLAGS.weights_out, **{f"{i}_{v.name}": v.numpy()
                                 for i, v in enumerate(trainer.flow.variables)})


if __name__ == "__main__":
  app.run(main)
