"""Resuming a run: whether a run directory's checkpoints belong to the settings and
the data given."""

import dataclasses
import os

from absl import logging
import tensorflow as tf

from realnvp_tf.runs import directory

# Model settings a run may change when it resumes: they create no variables.
RESUMABLE_MODEL_CHANGES = ("compute_dtype", "dropout_rate")


def check_resumable(run_directory, model_config, train_config, fingerprint=None):
  """A one-line ValueError if the run's config.json says its checkpoints hold
  another model than `model_config` (or EMA weights where there are none), or were
  trained on other data: another dataset, folder, image size, channels or split
  fractions, or (by `data.fingerprint`) other splits, classes or files. With
  `train_config.allow_data_change` a change of data is a warning instead. Settings
  that only steer optimisation (learning rate, steps, cadences) may change between
  legs."""
  path = run_directory.path
  if not tf.io.gfile.exists(os.path.join(path, directory.CONFIG_FILE)):
    return
  saved_model, saved_train = directory.read_run_config(path)
  differences = [
      _change(field.name, getattr(saved_model, field.name),
              getattr(model_config, field.name))
      for field in dataclasses.fields(model_config)
      if field.name not in RESUMABLE_MODEL_CHANGES
      and getattr(saved_model, field.name) != getattr(model_config, field.name)]
  if bool(saved_train.get("ema_decay")) != bool(train_config.ema_decay):
    differences.append(f"ema_decay={saved_train.get('ema_decay')} (now "
                       f"{train_config.ema_decay}; EMA on or off changes what is "
                       f"checkpointed)")
  changed = data_changes(saved_train, directory.read_data_fingerprint(path),
                         train_config, fingerprint)
  if differences:  # (another dataset usually changes the model's shape too)
    raise ValueError(
        f"model_dir={path} holds a run with other settings: "
        f"{', '.join(differences + changed)}. Resume it with its own settings, or "
        f"pass a new model_dir.")
  if changed and train_config.allow_data_change:
    logging.warning("Resuming %s on other data than it was trained on (%s), as "
                    "allow_data_change says.", path, ", ".join(changed))
  elif changed:
    raise ValueError(
        f"model_dir={path} was trained on other data: {', '.join(changed)}. Resume "
        f"it on its own data, pass allow_data_change=True to continue on this data on "
        f"purpose, or pass a new model_dir.")


def data_changes(saved_train, saved_fingerprint, train_config, fingerprint):
  """What differs between the data a run recorded and the data given, as
  "name=old (now new)" strings."""
  now = train_config.data_spec().as_dict()
  changes = [_change(name, saved_train.get(name), value)
             for name, value in now.items() if saved_train.get(name) != value]
  if saved_fingerprint is None or fingerprint is None:
    return changes  # a run from before fingerprints: its settings only
  for key, value in fingerprint.items():
    old = saved_fingerprint.get(key)
    if key == "files":
      changes += [f"the files of its {split} split" for split in value
                  if (old or {}).get(split) != value[split]]
    elif old != value and key not in ("name", "image_shape", "num_levels"):
      changes.append(_change(key, old, value))
  return changes


def _change(name, old, new):
  return f"{name}={old!r} (now {new!r})"
