"""One worker of the multi-worker test: trains with train.py's flags, then reports what
it saw (strategy, replicas, where it wrote) and saves its final weights."""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from realnvp_tf import training
from realnvp_tf.apps import cli
from realnvp_tf.apps import train as train_app

# train.py's flags (defined when its module is imported), plus this worker's.
assert train_app.FLAGS is flags.FLAGS

flags.DEFINE_string("weights_out", None, "Where to save this worker's weights.")
flags.DEFINE_string("report_out", None, "Where to write this worker's report (JSON).")
flags.DEFINE_string("initial_weights_out", None, "Where to save the initial weights.")
FLAGS = flags.FLAGS


class _ReportingTrainer(training.Trainer):
  """Lists the directory it writes to when it closes (a non-chief's temporary
  directory is removed then)."""

  def close(self):
    path = self.run_dir.write_path
    self.written = sorted(os.path.relpath(os.path.join(root, name), path)
                          for root, _, names in os.walk(path) for name in names)
    super().close()


def main(argv):
  del argv
  trainer = _ReportingTrainer(cli.model_config_from_flags(),
                              cli.train_config_from_flags(training.TrainConfig),
                              FLAGS.model_dir)
  report = dict(multi_worker=isinstance(trainer.strategy,
                                        tf.distribute.MultiWorkerMirroredStrategy),
                replicas=trainer.strategy.num_replicas_in_sync,
                write_dir=trainer.run_dir.write_path, pid=os.getpid(),
                write_dir_created=os.path.isdir(trainer.run_dir.write_path))
  np.savez(FLAGS.initial_weights_out,
           *[v.numpy() for v in trainer.state.flow.variables])
  trainer.fit(progress=False)
  report["written"] = trainer.written
  with open(FLAGS.report_out, "w") as f:
    json.dump(report, f)
  np.savez(FLAGS.weights_out, *[v.numpy() for v in trainer.state.flow.variables])


if __name__ == "__main__":
  app.run(main)
