"""Writes the stored exports that `tests/test_export_formats.py` loads.

A tiny unconditional and a tiny class-conditional export, made by the version of
the package that defined their format, and what that version's own loaded model
gave on fixed inputs (`expected.npz`), so that later versions can show they still
load them and give the same numbers. Run from a checkout of that version:

  PYTHONPATH=. python tests/data/exports/make_exports.py tests/data/exports

Weights are moved off their initial values (seeded) so that every layer, and the
label, matters.
"""

import os
import sys
import tarfile
import tempfile

import numpy as np

import realnvp_tf
from realnvp_tf.runs import export
from realnvp_tf.runs import loading

SHAPE, LEVELS, CLASSES = (4, 4, 1), 17, 3


def _perturbed_flow(num_classes):
  flow = realnvp_tf.build_realnvp(realnvp_tf.RealNVPConfig(
      image_shape=SHAPE, num_levels=LEVELS, num_scales=1, num_res_blocks=1,
      num_filters=4, num_classes=num_classes, class_embedding_dim=2))
  rng = np.random.default_rng(3 + num_classes)
  for variable in flow.variables:
    shape = variable.shape.as_list()
    if "moving_variance" in variable.name:
      variable.assign(variable * rng.uniform(0.8, 1.25, shape).astype(np.float32))
    else:
      variable.assign_add(rng.normal(0.0, 0.1, shape).astype(np.float32))
  return flow


def main(output):
  rng = np.random.default_rng(0)
  images = rng.integers(0, LEVELS, (5, *SHAPE)).astype(np.uint8)
  values = images.astype(np.float32) + 0.5
  labels = np.array([0, 1, 2, 0, 1], np.int32)
  expected = dict(images=images, values=values, labels=labels)
  for name, classes in (("unconditional", 0), ("conditional", CLASSES)):
    with tempfile.TemporaryDirectory() as tmp:
      metadata = {"dataset": "stored", "typicality_reference": {
          "mean": 3.0, "std": 0.5, "num_images": 10, "split": "validation"}}
      if classes:
        metadata["class_counts"] = [6, 1, 3]
      export.export_saved_model(_perturbed_flow(classes), tmp, metadata)
      model = loading.load(tmp)
      given = labels if classes else None
      expected[f"{name}_log_prob"] = model.log_prob(values, given).numpy()
      expected[f"{name}_bits_per_dim"] = model.bits_per_dim(
          images, (1, 2), given).numpy()
      expected[f"{name}_ood_bits_per_dim"] = model.ood_scores(
          images, (1, 2))["bits_per_dim"]
      expected[f"{name}_z"] = model.encode(values, given).numpy()
      expected[f"{name}_samples"] = model.sample(
          None if classes else 5, 0.7, (3, 4), given)["values"].numpy()
      if classes:
        expected[f"{name}_probabilities"] = model.classify(
            images, (1, 2))["probabilities"]
      with tarfile.open(os.path.join(output, f"{name}.tar.gz"), "w:gz") as archive:
        archive.add(tmp, arcname=name)
  np.savez(os.path.join(output, "expected.npz"), **expected)


if __name__ == "__main__":
  main(sys.argv[1])
