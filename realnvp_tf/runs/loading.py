"""Loading a trained model: `load(path)` for an export or a run directory."""

import dataclasses
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from realnvp_tf import data
from realnvp_tf.model import conditional
from realnvp_tf.model import flow as flow_lib
from realnvp_tf.runs import best
from realnvp_tf.runs import checkpoints
from realnvp_tf.runs import directory
from realnvp_tf.runs import export


class LoadedModel:
  """A trained model from a SavedModel or from a run directory's checkpoint.

  Both expose the SavedModel's functions (`log_prob`, `bits_per_dim`, `ood_scores`,
  `sample`, `encode`, `decode`; `classify` for a class-conditional model) through
  `self.serving`, wrapped here as methods that take and return numpy-friendly
  values, and the model's `metadata` dict.

  One interface for both kinds of model: `labels` (one class per image or sample) is
  optional. A class-conditional model (`num_classes` > 0) gives log p(x | y) with
  labels and the marginal p(x) = sum_y p(x | y) p(y) without them (p(y):
  `log_prior`), and samples from p(x) when `sample` gets no labels; only its
  `encode` and `decode`, whose latents depend on the class, need them. An
  unconditional model refuses labels. Labels are checked here, with one-line errors.
  """

  def __init__(self, serving, metadata, source):
    self.serving = serving
    self.metadata = metadata
    self.source = source
    model = metadata["model"]
    self.image_shape = tuple(model["image_shape"])
    self.num_levels = int(model["num_levels"])
    self.num_classes = int(model.get("num_classes", 0))
    self.class_names = list(metadata.get("class_names") or [])
    self.dataset = metadata.get("dataset")

  @property
  def log_prior(self):
    """log p(y) [num_classes] of a class-conditional model: from the training split's
    label counts it records, uniform when it has none."""
    self._require_classes("has no label prior")
    return conditional.log_prior(self.metadata.get("class_counts"), self.num_classes)

  @property
  def prior(self):
    """What `log_prior` is, for a report: "training label counts" or "uniform"."""
    return ("training label counts" if self.metadata.get("class_counts")
            else "uniform")

  def _require_classes(self, what):
    if not self.num_classes:
      raise ValueError(f"{self.source} is not class-conditional: it {what}; train one "
                       f"with class labels (class_conditional).")

  def _labels(self, labels, count):
    """`labels` as an int32 tensor of `count` classes, None when there are none, or
    a one-line ValueError: the one check of labels."""
    if labels is None:
      return None
    if not self.num_classes:
      raise ValueError(f"{self.source} is not class-conditional: it takes no labels.")
    if tf.is_tensor(labels) and not tf.executing_eagerly():
      return tf.cast(labels, tf.int32)  # in a tf.function: the signature checks them
    values = np.asarray(labels)
    if values.ndim != 1 or (count is not None and len(values) != count):
      raise ValueError(f"labels must be a vector of {count} classes (one per image); "
                       f"got shape {values.shape}.")
    if values.size and not np.issubdtype(values.dtype, np.integer):
      raise ValueError(f"labels must be integers; got {values.dtype}.")
    bad = np.flatnonzero((values < 0) | (values >= self.num_classes))
    if bad.size:
      raise ValueError(f"labels must be class indices in [0, {self.num_classes}); got "
                       f"{values[bad[0]]} at index {bad[0]}.")
    return tf.constant(values, tf.int32)

  def _call(self, name, *args, labels=None):
    """The signature `name`, with the labels (checked) after the first input."""
    if labels is not None:
      args = args[:1] + (labels,) + args[1:]
    return getattr(self.serving, name)(*args)

  def log_prob(self, images, labels=None):
    """log p(x | y) with labels, else log p(x) (the marginal of a class-conditional
    model), of float32 images [N, H, W, C] of dequantized pixels in [0, K)."""
    images = tf.convert_to_tensor(images, tf.float32)
    labels = self._labels(labels, images.shape[0])
    if labels is None and self.num_classes:
      return conditional.posterior(self.class_log_likelihoods(images),
                                   self.log_prior)["log_prob"]
    return self._call("log_prob", images, labels=labels)["log_prob"]

  def class_log_likelihoods(self, images):
    """log p(x | y) [N, num_classes] of float32 images [N, H, W, C] of a
    class-conditional model: its `log_prob` once per class, on the whole batch."""
    self._require_classes("has no classes")
    return conditional.class_log_likelihoods(
        lambda x, y: self.serving.log_prob(x, y)["log_prob"],
        tf.convert_to_tensor(images, tf.float32), self.num_classes)

  def bits_per_dim(self, images, seed=(0, 0), labels=None):
    """Bits/dim of uint8 images [N, H, W, C], dequantized with seeded noise: of
    p(x | y) with labels, else of p(x)."""
    images = tf.convert_to_tensor(images, tf.uint8)
    seed = tf.constant(seed, tf.int32)
    labels = self._labels(labels, images.shape[0])
    if labels is None and self.num_classes:
      return self.serving.classify(images, seed)["bits_per_dim"]
    return self._call("bits_per_dim", images, seed, labels=labels)["bits_per_dim"]

  def ood_scores(self, images, seed=(0, 0)):
    """`ood` scores of uint8 images [N, H, W, C]: a dict of numpy arrays
    (`typicality` and `batch_typicality` only when the model has a reference)."""
    if not hasattr(self.serving, "ood_scores"):
      raise ValueError(f"{self.source} was exported before the ood_scores signature "
                       f"existed; re-export it by running train.py again with the same "
                       f"flags and model_dir (a finished run only re-exports).")
    out = self.serving.ood_scores(tf.convert_to_tensor(images, tf.uint8),
                                  tf.constant(seed, tf.int32))
    return {name: value.numpy() for name, value in out.items()}

  def classify(self, images, seed=(0, 0)):
    """The generative classifier on uint8 images [N, H, W, C]: a dict of numpy
    arrays: probabilities p(y | x) [N, n], labels [N], log_likelihoods log p(x | y)
    [N, n], bits_per_dim of p(x) [N]."""
    self._require_classes("cannot classify")
    out = self.serving.classify(tf.convert_to_tensor(images, tf.uint8),
                                tf.constant(seed, tf.int32))
    return {name: value.numpy() for name, value in out.items()}

  @property
  def typicality_reference(self):
    """dict(mean, std, num_images, split) of held-out bits/dim, or None."""
    return self.metadata.get("typicality_reference")

  def sample(self, num_samples=None, temperature=1.0, seed=(0, 0), labels=None):
    """Samples at `temperature`: dict(images=uint8, values=float32). With `labels`,
    one sample of p(x | y) per label (`num_samples`, if given, is their number);
    without, `num_samples` of p(x) (for a class-conditional model, labels drawn
    from p(y) with the seed)."""
    labels = self._labels(labels, num_samples)
    if labels is None and num_samples is None:
      raise ValueError("sample needs num_samples (or labels, one class per sample).")
    rest = (tf.constant(temperature, tf.float32), tf.constant(seed, tf.int32))
    if labels is None and self.num_classes:
      labels = tf.random.stateless_categorical(
          self.log_prior[None], num_samples, tf.random.experimental.stateless_fold_in(
              rest[1], _LABEL_DRAW), dtype=tf.int32)[0]
    if self.num_classes:
      return self.serving.sample(labels, *rest)
    return self.serving.sample(tf.constant(num_samples, tf.int32), *rest)

  def encode(self, images, labels=None):
    """The latents z (image-shaped) of float32 images in [0, K); a class-conditional
    model needs the labels (its latents depend on the class)."""
    images = tf.convert_to_tensor(images, tf.float32)
    return self._call("encode", images,
                      labels=self._required_labels("encode", labels, images))["z"]

  def decode(self, z, labels=None):
    """Images of latents: dict(images=uint8, values=float32); a class-conditional
    model needs the labels z was encoded with."""
    z = tf.convert_to_tensor(z, tf.float32)
    return self._call("decode", z, labels=self._required_labels("decode", labels, z))

  def _required_labels(self, name, labels, images):
    labels = self._labels(labels, images.shape[0])
    if labels is None and self.num_classes:
      raise ValueError(f"{self.source} is class-conditional ({self.num_classes} "
                       f"classes): {name} needs labels, one class per image (its "
                       f"latents depend on the class).")
    return labels


# Folded into `sample`'s seed for the labels it draws, so that they do not reuse the
# stream of the latents.
_LABEL_DRAW = 1


def load_saved_model(path):
  """Loads an export of `export.export_saved_model`."""
  if not tf.io.gfile.isdir(path):
    raise ValueError(f"saved_model={path}: no such directory.")
  if not _is_saved_model(path):
    raise ValueError(f"saved_model={path} is not a SavedModel (no saved_model.pb); "
                     f"pass the export/ directory that train.py wrote.")
  serving = tf.saved_model.load(path)
  if not hasattr(serving, "metadata"):
    raise ValueError(f"saved_model={path} is a SavedModel, but not one exported by "
                     f"realnvp_tf (it has no metadata).")
  return LoadedModel(serving, json.loads(serving.metadata.numpy()), path)


def load_checkpoint(model_dir, compute_dtype=None, select=None):
  """The model of a run directory, with the weights `select` names, by default the
  run's own (see `restore_for_inference`: the best validation weights unless the run
  says last); `compute_dtype` overrides the s/t networks' precision."""
  flow, metadata, path = restore_for_inference(model_dir, compute_dtype, select)
  return LoadedModel(export.serving_module(flow, metadata), metadata, path)


def load(path, select=None):
  """A trained model from an export (a SavedModel directory written by training) or a
  run directory (the weights the run selects, as its export would: those of the best
  validation figure by default, the latest checkpoint with `select=last` or before a
  best was kept; EMA weights when the run kept them). `select` ("best" or "last")
  chooses for a run directory.

      model = realnvp_tf.load("runs/mnist/export")
      model.log_prob(x); model.sample(16, temperature=0.7)["images"]
      z = model.encode(x); model.decode(z)["values"]
  """
  path = os.fspath(path)
  if _is_saved_model(path):
    if select:
      raise ValueError(f"{path} is an export: it holds the weights its run selected; "
                       f"select applies to a run directory.")
    return load_saved_model(path)
  if tf.io.gfile.exists(os.path.join(path, directory.CONFIG_FILE)):
    return load_checkpoint(path, select=select)
  raise ValueError(f"{path} is neither a SavedModel (no saved_model.pb) nor a run "
                   f"directory (no {directory.CONFIG_FILE}).")


def _is_saved_model(path):
  return any(tf.io.gfile.exists(os.path.join(path, name))
             for name in ("saved_model.pb", "saved_model.pbtxt"))


def restore_for_inference(model_dir, compute_dtype=None, select=None):
  """The flow of a run directory, with the weights the run selects.

  `select`: "best" (model_dir/best/: the weights of the best validation figure so
  far) or "last" (the latest checkpoint, with its EMA weights when it has them);
  default: the run's own `select`. "best" falls back to "last" while no best is kept,
  and, with a warning that says so, when best/ cannot be restored (a corrupt file).
  Returns (flow, metadata, checkpoint path); metadata holds the dataset, the data
  settings, the step, which weights (`select`) and the model config. `compute_dtype`
  overrides the precision of the s/t networks.
  """
  if select not in (None, "best", "last"):
    raise ValueError(f"select must be best or last; got {select!r}.")
  model_config, train = directory.read_run_config(model_dir)
  if compute_dtype:
    model_config = dataclasses.replace(model_config, compute_dtype=compute_dtype)
  flow = flow_lib.build_realnvp(model_config)
  best_dir = os.path.join(model_dir, directory.BEST_DIR)
  selected, restored = select or train.get("select", "best"), None
  if selected == "best" and tf.io.gfile.exists(best_dir):
    try:
      restored = best.restore(tf.train.Checkpoint(flow=flow), best_dir)
    except ValueError as e:
      logging.warning("%s: using the latest checkpoint instead, the run's last weights "
                      "rather than its best (select=last chooses them without "
                      "this warning).", e)
  if restored is None:
    selected, restored = "last", _restore_last(flow, model_dir, train)
  path, step = restored[:2]
  metadata = export.model_metadata(
      train["dataset"], data.DataSpec.from_dict(train).as_dict(),
      step, select=selected, model=dataclasses.asdict(model_config),
      **_finished_run_metadata(model_dir, step))
  return flow, metadata, path


def _restore_last(flow, model_dir, train):
  """Restores the latest checkpoint that restores (its EMA weights into the flow when
  the run kept them); returns (path, step)."""
  step = tf.Variable(0, dtype=tf.int64)
  variables = list(flow.trainable_variables)
  ema = ([tf.Variable(tf.zeros_like(v)) for v in variables]
         if train.get("ema_decay") else None)
  checkpoint = checkpoints.make_checkpoint(flow, step, ema=ema)
  path = checkpoints.restore_newest(
      checkpoint, os.path.join(model_dir, directory.CHECKPOINT_DIR), partial=True)
  if path is None:
    raise ValueError(f"model_dir={model_dir} has no checkpoint in "
                     f"{directory.CHECKPOINT_DIR}/.")
  for variable, average in zip(variables, ema or []):
    variable.assign(average)
  return path, int(step.numpy())


def _finished_run_metadata(model_dir, step):
  """What metrics.json adds for inference: the class counts and names of a
  class-conditional run, and the typicality reference when it belongs to the
  weights of `step` (a finished run's selected weights; not those of a run still
  training). Empty before the run has finished."""
  path = os.path.join(model_dir, directory.METRICS_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    metrics = json.load(f)
  names = ["class_counts", "class_names"]
  if metrics.get("selected_step") == step:
    names.append("typicality_reference")
  return {name: metrics[name] for name in names if metrics.get(name) is not None}
