"""Resuming a run: whether a run directory's checkpoints belong to the settings given."""

import dataclasses
import os

import tensorflow as tf

from realnvp_tf.runs import directory

# Model settings a run may change when it resumes: they create no variables.
RESUMABLE_MODEL_CHANGES = ("compute_dtype",)


def check_resumable(run_directory, model_config, train_config):
  """A one-line ValueError if the run's config.json says its checkpoints hold
  another model than `model_config` (or EMA weights where there are none), or were
  trained on another dataset. Settings that only steer optimisation (learning rate,
  steps, cadences) may change between legs."""
  path = run_directory.path
  if not tf.io.gfile.exists(os.path.join(path, directory.CONFIG_FILE)):
    return
  saved_model, saved_train = directory.read_run_config(path)
  differences = [
      f"{field.name}={getattr(saved_model, field.name)!r} (now "
      f"{getattr(model_config, field.name)!r})"
      for field in dataclasses.fields(model_config)
      if field.name not in RESUMABLE_MODEL_CHANGES
      and getattr(saved_model, field.name) != getattr(model_config, field.name)]
  if saved_train["dataset"] != train_config.dataset:
    differences.append(f"dataset={saved_train['dataset']!r} (now "
                       f"{train_config.dataset!r})")
  if bool(saved_train.get("ema_decay")) != bool(train_config.ema_decay):
    differences.append(f"ema_decay={saved_train.get('ema_decay')} (now "
                       f"{train_config.ema_decay}; EMA on or off changes what is "
                       f"checkpointed)")
  if differences:
    raise ValueError(
        f"--model_dir={path} holds a run with other settings: "
        f"{', '.join(differences)}. Resume it with its own settings, or pass a new "
        f"--model_dir.")
