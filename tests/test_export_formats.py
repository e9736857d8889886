"""Exports made by an earlier version still load and give that version's numbers.

`tests/data/exports/` holds a tiny unconditional and a tiny class-conditional export
made by the version before labels became optional (its `make_exports.py` says how),
with what that version's loaded model gave on fixed inputs (`expected.npz`).
"""

import os
import tarfile

import numpy as np
import pytest

import realnvp_tf

STORED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "exports")
PRIOR = np.log((np.array([6, 1, 3]) + 1) / (10 + 3))  # add-one smoothed counts
DIMS_LN2 = 16 * np.log(2)


@pytest.fixture(scope="module")
def expected():
  return dict(np.load(os.path.join(STORED, "expected.npz")))


@pytest.fixture(scope="module", params=["unconditional", "conditional"])
def stored(request, tmp_path_factory):
  root = tmp_path_factory.mktemp("stored")
  with tarfile.open(os.path.join(STORED, f"{request.param}.tar.gz")) as archive:
    archive.extractall(root, filter="data")
  return request.param, realnvp_tf.load(str(root / request.param))


def test_a_stored_export_gives_the_numbers_of_the_version_that_made_it(
    stored, expected):
  name, model = stored
  images, values = expected["images"], expected["values"]
  labels = expected["labels"] if model.num_classes else None
  assert model.num_classes == (3 if name == "conditional" else 0)

  def close(actual, key, rtol=1e-5):
    np.testing.assert_allclose(actual, expected[f"{name}_{key}"], rtol=rtol,
                               atol=1e-5)

  close(model.log_prob(values, labels), "log_prob")
  close(model.bits_per_dim(images, (1, 2), labels), "bits_per_dim")
  close(model.ood_scores(images, (1, 2))["bits_per_dim"], "ood_bits_per_dim")
  close(model.encode(values, labels), "z")
  count = None if labels is not None else 5
  close(model.sample(count, 0.7, (3, 4), labels)["values"], "samples", rtol=1e-4)
  if model.num_classes:
    close(model.classify(images, (1, 2))["probabilities"], "probabilities")


def test_labels_are_optional_on_a_stored_conditional_export(stored, expected):
  name, model = stored
  if name != "conditional":
    with pytest.raises(ValueError, match="is not class-conditional: it takes no "
                                         "labels"):
      model.log_prob(expected["values"], [0] * 5)
    return
  images, values = expected["images"], expected["values"]
  per_class = np.stack([model.log_prob(values, np.full([5], y)).numpy()
                        for y in range(3)], axis=1).astype(np.float64)
  np.testing.assert_allclose(model.log_prob(values),
                             np.logaddexp.reduce(per_class + PRIOR, axis=1), rtol=1e-5)
  bits = np.stack([model.bits_per_dim(images, (1, 2), np.full([5], y)).numpy()
                   for y in range(3)], axis=1).astype(np.float64)
  marginal_bits = -np.logaddexp.reduce(-bits * DIMS_LN2 + PRIOR, axis=1) / DIMS_LN2
  np.testing.assert_allclose(model.bits_per_dim(images, (1, 2)), marginal_bits,
                             rtol=1e-5)
  with pytest.raises(ValueError, match="encode needs labels, one class per image"):
    model.encode(values)
  # Samples of p(x): labels drawn from the recorded prior. Each sample is the one its
  # label gives with the same seed; the labels' frequencies follow p(y).
  count = 600
  drawn = model.sample(count, 1.0, (5, 6))["values"].numpy().reshape(count, -1)
  per_label = np.stack([
      model.sample(count, 1.0, (5, 6), np.full([count], y))["values"].numpy().reshape(
          count, -1) for y in range(3)])
  distance = np.abs(per_label - drawn).max(axis=2)
  assert np.all(distance.min(axis=0) < 1e-4)
  frequencies = np.bincount(distance.argmin(axis=0), minlength=3) / count
  p = np.exp(PRIOR)
  assert np.all(np.abs(frequencies - p) < 4 * np.sqrt(p * (1 - p) / count)), (
      frequencies, p)
