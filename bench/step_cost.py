"""What a training step is made of: its fixed cost and the ops it executes.

`fit_fixed_cost` fits step time = fixed + per_image * batch over several batch sizes
(least squares): the fixed part does not shrink with the batch, so it is what a small
model or a GPU pays per op. `executed_ops` runs a function once under TensorFlow's
profiler and counts the kernels it executed (a loop body once per iteration, a called
function once per call), with the time spent in each op type.
"""

import collections
import glob
import os
import re
import tempfile

# A kernel's event on a host thread: "node/name:OpType" (no spaces; the executor's
# and the eager runtime's own events are "A::B" or "Words: more").
_KERNEL_EVENT = re.compile(r"^[^\s:]+:([A-Za-z0-9_]+)$")


def fit_fixed_cost(batch_sizes, seconds):
  """(fixed_cost_s, per_image_s) of the least-squares line through (batch, seconds)."""
  if len(batch_sizes) < 2 or len(set(batch_sizes)) < 2:
    raise ValueError(f"need two or more distinct batch sizes; got {batch_sizes}.")
  count = len(batch_sizes)
  mean_b, mean_s = sum(batch_sizes) / count, sum(seconds) / count
  spread = sum((b - mean_b) ** 2 for b in batch_sizes)
  slope = sum((b - mean_b) * (s - mean_s)
              for b, s in zip(batch_sizes, seconds, strict=True)) / spread
  return mean_s - slope * mean_b, slope


def _xspace(logdir):
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
  if len(paths) != 1:
    raise RuntimeError(f"expected one profile in {logdir}; found {paths}.")
  space = xplane_pb2.XSpace()
  with open(paths[0], "rb") as f:
    space.ParseFromString(f.read())
  return space


def executed_ops(tf, fn):
  """Runs `fn()` once under the profiler: (number of TF ops executed, {op type:
  [count, seconds]}). Ops are the kernel events ("name:Type") on the host threads but
  the input pipeline's."""
  with tempfile.TemporaryDirectory(prefix="realnvp_profile_") as logdir:
    tf.profiler.experimental.start(logdir)
    try:
      fn()
    finally:
      tf.profiler.experimental.stop()
    space = _xspace(logdir)
  by_type = collections.defaultdict(lambda: [0, 0.0])
  for plane in space.planes:
    if not plane.name.startswith("/host:"):
      continue
    for line in plane.lines:
      if line.name.startswith("tf_data"):  # the input pipeline's threads
        continue
      for event in line.events:
        match = _KERNEL_EVENT.match(plane.event_metadata[event.metadata_id].name)
        if not match:
          continue
        entry = by_type[match.group(1)]
        entry[0] += 1
        entry[1] += event.duration_ps * 1e-12
  return sum(count for count, _ in by_type.values()), dict(by_type)
