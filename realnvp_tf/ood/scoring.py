"""Scoring images with a trained model: one row of `ood` scores per image.

    model = realnvp_tf.load("runs/fashion/export")
    inputs = scoring.open_images(model, images="photos/")
    summary = scoring.score_to_file(model, inputs, "scores.csv")

Rows: `index` (the row's number), `image` (the file, or array/split and index), then
the scores (`scores.SCORE_NAMES`; `typicality` only when the model has a held-out
reference). Image number r of the rows is dequantized with the noise evaluation with
`seed` gives image r (`data.dequantization.image_noise`), so rows do not depend on
the batch size and two runs agree to the last digit.
"""

import csv
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from realnvp_tf.data import image_folder
from realnvp_tf.data import image_inputs
from realnvp_tf.evaluation import model_images
from realnvp_tf.ood import scores as scores_lib

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def output_format(path):
  """"csv" or "jsonl" from the file's extension (.csv, .jsonl, .json)."""
  extension = os.path.splitext(path)[1].lower()
  if extension not in FORMATS:
    raise ValueError(f"output={path}: use a .csv or .jsonl file (JSON lines).")
  return FORMATS[extension]


def open_images(model, images=None, dataset=None, split="test", data_dir=None,
                manual_dir=None):
  """The images to score, brought to `model`'s shape and K: `images` (a folder, glob
  or .npy/.npz, see `data.image_inputs`) or the `split` of `dataset`."""
  if bool(images) == bool(dataset):
    raise ValueError("pass exactly one of images= (a folder, glob or .npy/.npz) and "
                     "dataset=.")
  if images:
    return image_inputs.open_inputs(images, model.image_shape, model.num_levels)
  return model_images.split_inputs(model, dataset, None, split, data_dir, manual_dir)


def score_batches(model, inputs, batch_size=256, seed=0):
  """Yields (indices, scores) per batch: the inputs' int64 indices of the images that
  decoded, and `model.ood_scores` of them (per-image arrays only)."""
  row = 0
  batches = inputs.images.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  for indices, images in batches:
    scores = model.ood_scores(images, seed=(seed, row))
    scores.pop("batch_typicality", None)
    row += int(indices.shape[0])
    yield indices.numpy(), scores


def columns(model):
  return ["index", "image"] + [name for name in scores_lib.SCORE_NAMES if
                               name != "typicality" or model.typicality_reference]


class _RowWriter:
  """Rows to a CSV or JSON-lines file object."""

  def __init__(self, file, fmt, names):
    self._file, self._fmt, self._names = file, fmt, names
    self._csv = csv.writer(file) if fmt == "csv" else None
    if self._csv:
      self._csv.writerow(names)

  def write(self, values):
    if self._csv:
      self._csv.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in values])
    else:
      self._file.write(json.dumps(dict(zip(self._names, values, strict=True))) + "\n")


def score_to_file(model, inputs, output, batch_size=256, seed=0,
                  fail_on_bad_images=False):
  """Scores `inputs` (`data.image_inputs.ImageInputs`) and writes the rows to
  `output` (.csv or .jsonl; written to a temporary file and renamed at the end, so
  a failed run leaves no partial file). Files that cannot be decoded get no row
  (with `fail_on_bad_images`, nothing is written and ValueError names them).
  Returns a summary dict: num_images, the mean of each score, bad_files, seconds,
  images_per_second, output."""
  fmt = output_format(output)
  names = columns(model)
  folder = os.path.dirname(os.path.abspath(output))
  os.makedirs(folder, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=folder, suffix=".partial")
  start = time.perf_counter()
  sums, seen, row = {}, [], 0
  try:
    with os.fdopen(handle, "w", newline="") as f:
      writer = _RowWriter(f, fmt, names)
      for indices, scores in score_batches(model, inputs, batch_size, seed):
        seen.append(indices)
        for position, index in enumerate(indices):
          writer.write([row, inputs.name(int(index))] +
                       [float(scores[name][position]) for name in names[2:]])
          row += 1
        for name in names[2:]:
          sums[name] = sums.get(name, 0.0) + float(
              np.sum(scores[name], dtype=np.float64))
    if not row:
      raise ValueError(
          f"None of the {inputs.description} could be decoded as an image.")
    seen = np.concatenate(seen)
    bad = inputs.bad_files(seen)
    if bad and fail_on_bad_images:
      raise ValueError(f"{len(bad)} of the {inputs.description} cannot be decoded as "
                       f"images: {image_folder.listing(bad)}; nothing was written.")
    os.replace(temporary, output)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
  seconds = time.perf_counter() - start
  return dict(num_images=row, means={name: total / row for name, total in sums.items()},
              bad_files=bad, seconds=seconds,
              images_per_second=row / seconds, output=output)


def summary_line(summary, model, description):
  """The one line score.py ends with."""
  means = summary["means"]
  parts = [f"scored {summary['num_images']} images ({description}) in "
           f"{summary['seconds']:.1f} s ({summary['images_per_second']:.0f} images/s)",
           f"mean bits/dim {means['bits_per_dim']:.4f}"]
  reference = model.typicality_reference
  if reference:
    parts[-1] += (f" (the model's held-out {reference['split']} images: "
                  f"{reference['mean']:.4f} +- {reference['std']:.4f})")
  parts.append(f"complexity-corrected {means['complexity_corrected']:.4f}")
  if summary["bad_files"]:
    count = len(summary["bad_files"])
    parts.append(f"{count} file{'s' if count > 1 else ''} could not be decoded "
                 f"({'they have' if count > 1 else 'it has'} no row)")
  parts.append(f"rows in {summary['output']}")
  return "; ".join(parts)
