"""Loading a trained model: `load(path)` for an export or a run directory."""

import json
import os

import tensorflow as tf

from realnvp_tf import export
from realnvp_tf import run_dir


class LoadedModel:
  """A trained model from a SavedModel or from a run directory's checkpoint.

  Both expose the SavedModel's functions (`log_prob`, `bits_per_dim`, `ood_scores`,
  `sample`, `encode`, `decode`) through `self.serving`, wrapped here as methods that
  take and return numpy-friendly values, and the model's `metadata` dict.
  """

  def __init__(self, serving, metadata, source):
    self.serving = serving
    self.metadata = metadata
    self.source = source
    model = metadata["model"]
    self.image_shape = tuple(model["image_shape"])
    self.num_levels = int(model["num_levels"])
    self.dataset = metadata.get("dataset")

  def log_prob(self, images):
    """log p(x) of float32 images [N, H, W, C] of dequantized pixels in [0, K)."""
    return self.serving.log_prob(tf.convert_to_tensor(images, tf.float32))["log_prob"]

  def bits_per_dim(self, images, seed=(0, 0)):
    """Bits/dim of uint8 images [N, H, W, C], dequantized with seeded noise."""
    return self.serving.bits_per_dim(tf.convert_to_tensor(images, tf.uint8),
                                     tf.constant(seed, tf.int32))["bits_per_dim"]

  def ood_scores(self, images, seed=(0, 0)):
    """`ood` scores of uint8 images [N, H, W, C]: a dict of numpy arrays
    (`typicality` and `batch_typicality` only when the model has a reference)."""
    if not hasattr(self.serving, "ood_scores"):
      raise ValueError(f"{self.source} was exported before the ood_scores signature "
                       f"existed; re-export it by running train.py again with the same "
                       f"flags and --model_dir (a finished run only re-exports).")
    out = self.serving.ood_scores(tf.convert_to_tensor(images, tf.uint8),
                                  tf.constant(seed, tf.int32))
    return {name: value.numpy() for name, value in out.items()}

  @property
  def typicality_reference(self):
    """dict(mean, std, num_images, split) of held-out bits/dim, or None."""
    return self.metadata.get("typicality_reference")

  def sample(self, num_samples, temperature=1.0, seed=(0, 0)):
    """`num_samples` samples at `temperature`: dict(images=uint8, values=float32)."""
    return self.serving.sample(tf.constant(num_samples, tf.int32),
                               tf.constant(temperature, tf.float32),
                               tf.constant(seed, tf.int32))

  def encode(self, images):
    """The latents z (image-shaped) of float32 images in [0, K)."""
    return self.serving.encode(tf.convert_to_tensor(images, tf.float32))["z"]

  def decode(self, z):
    """Images of latents: dict(images=uint8, values=float32)."""
    return self.serving.decode(tf.convert_to_tensor(z, tf.float32))


def load_saved_model(path):
  """Loads an export of `export.export_saved_model`."""
  if not tf.io.gfile.isdir(path):
    raise ValueError(f"--saved_model={path}: no such directory.")
  if not _is_saved_model(path):
    raise ValueError(f"--saved_model={path} is not a SavedModel (no saved_model.pb); "
                     f"pass the export/ directory that train.py wrote.")
  serving = tf.saved_model.load(path)
  if not hasattr(serving, "metadata"):
    raise ValueError(f"--saved_model={path} is a SavedModel, but not one exported by "
                     f"realnvp_tf (it has no metadata).")
  return LoadedModel(serving, json.loads(serving.metadata.numpy()), path)


def load_checkpoint(model_dir, compute_dtype=None):
  """The model of a run directory's latest checkpoint (EMA weights when the run kept
  them, as the export does); `compute_dtype` overrides the s/t networks' precision."""
  flow, metadata, path = run_dir.restore_for_inference(model_dir, compute_dtype)
  return LoadedModel(export.RealNVPServing(flow, metadata), metadata, path)


def load(path):
  """A trained model from an export (a SavedModel directory written by training) or a
  run directory (its latest checkpoint).

      model = realnvp_tf.load("runs/mnist/export")
      model.log_prob(x); model.sample(16, temperature=0.7)["images"]
      z = model.encode(x); model.decode(z)["values"]
  """
  path = os.fspath(path)
  if _is_saved_model(path):
    return load_saved_model(path)
  if tf.io.gfile.exists(os.path.join(path, run_dir.CONFIG_FILE)):
    return load_checkpoint(path)
  raise ValueError(f"{path} is neither a SavedModel (no saved_model.pb) nor a run "
                   f"directory (no {run_dir.CONFIG_FILE}).")


def _is_saved_model(path):
  return any(tf.io.gfile.exists(os.path.join(path, name))
             for name in ("saved_model.pb", "saved_model.pbtxt"))
