"""A shipped model's stored form, and the SavedModel it is turned back into.

A train.py export is mostly two things: the graph (`saved_model.pb`, long node names
that compress about tenfold) and float32 weights (which do not compress). Stored, it is
`saved_model.pb.xz` and `weights.npz`: every tensor of the export's variables
checkpoint, the larger float32 ones (the convolution kernels) rounded to float16. A
3-scale MNIST model goes from 21 MB to about 6 MB this way.

`restore` writes the SavedModel back, the weights as float32 again in a checkpoint
of the names and order TensorFlow wrote, so `tf.saved_model.load` serves the same
signatures. The rounding is the only change: the shipped figures are measured on the
restored model, and the card gives the figure of the unrounded export beside them.
"""

import json
import lzma
import os
import shutil

import numpy as np

GRAPH_FILE = "saved_model.pb.xz"
WEIGHTS_FILE = "weights.npz"
# The checkpoint's own dtype for each tensor, stored beside them in weights.npz.
_DTYPES_KEY = "__dtypes__"
# float32 tensors of at least this many values are stored as float16: the kernels.
# Small ones (biases, gains, batch-norm statistics, whose variances can be tiny) keep
# float32; they are a few percent of the bytes.
HALF_PRECISION_MIN_SIZE = 1024
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _checkpoint_prefix(saved_model_dir):
  return os.path.join(saved_model_dir, "variables", "variables")


def store(saved_model_dir, folder):
  """Writes the stored form of the SavedModel `saved_model_dir` into `folder` (made
  if needed). Returns the number of tensors rounded to float16."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    graph = f.read()
  with lzma.open(os.path.join(folder, GRAPH_FILE), "wb", preset=9) as f:
    f.write(graph)
  reader = tf.train.load_checkpoint(_checkpoint_prefix(saved_model_dir))
  arrays, dtypes, rounded = {}, {}, 0
  for key, dtype in sorted(reader.get_variable_to_dtype_map().items()):
    value = reader.get_tensor(key)
    dtypes[key] = dtype.name
    if dtype == tf.string:  # the object graph and the export's metadata
      value = np.frombuffer(value, np.uint8)
    elif (dtype == tf.float32 and value.size >= HALF_PRECISION_MIN_SIZE
          and np.max(np.abs(value)) < _FLOAT16_MAX):
      value, rounded = value.astype(np.float16), rounded + 1
    arrays[key] = value
  arrays[_DTYPES_KEY] = np.frombuffer(json.dumps(dtypes).encode(), np.uint8)
  np.savez_compressed(os.path.join(folder, WEIGHTS_FILE), **arrays)
  return rounded


def restore(folder, saved_model_dir):
  """Writes the SavedModel stored in `folder` to `saved_model_dir` (which must not
  exist): the graph, and the weights as a checkpoint of their own dtypes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.join(saved_model_dir, "variables"))
  with lzma.open(os.path.join(folder, GRAPH_FILE)) as source, open(
      os.path.join(saved_model_dir, "saved_model.pb"), "wb") as target:
    shutil.copyfileobj(source, target)
  with np.load(os.path.join(folder, WEIGHTS_FILE)) as stored:
    dtypes = json.loads(stored[_DTYPES_KEY].tobytes())
    keys = sorted(dtypes)
    tensors = []
    for key in keys:
      value = stored[key]
      if dtypes[key] == "string":
        tensors.append(tf.constant(value.tobytes()))
      else:
        tensors.append(tf.constant(value.astype(dtypes[key])))
  os.makedirs(os.path.join(saved_model_dir, "assets"))
  tf.raw_ops.SaveV2(prefix=_checkpoint_prefix(saved_model_dir), tensor_names=keys,
                    shape_and_slices=[""] * len(keys), tensors=tensors)
