"""Class-conditional RealNVP: exactness per class, training, the classifier, export."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import realnvp_tf
from realnvp_tf import data
from realnvp_tf import training
from realnvp_tf.model import bijectors
from realnvp_tf.model import conditional
from realnvp_tf.model import flow as flow_lib
from realnvp_tf.runs import loading

from flow_checks import assert_bijective_and_finite
from flow_checks import brute_force_log_det
from flow_checks import perturb_variables
from flow_checks import relative_error
import raw_digits
import reference_metrics
import trainer_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 3


def _config(**kwargs):
  values = dict(image_shape=(4, 4, 2), num_levels=17, num_scales=2, num_res_blocks=1,
                num_filters=4, num_classes=CLASSES, class_embedding_dim=3)
  return realnvp_tf.RealNVPConfig(**dict(values, **kwargs))


@pytest.fixture(scope="module")
def flow():
  flow = realnvp_tf.build_realnvp(_config())
  perturb_variables(flow, seed=5)
  return flow


def _per_class(flow, x, num_classes=CLASSES):
  """log p(x | y) [B, n] of every class, in a traced function."""
  return tf.function(conditional.class_log_likelihoods)(
      lambda images, y: flow_lib.log_prob(flow, images, y), x, num_classes).numpy()


def _pixels(n, seed, shape=(4, 4, 2), levels=17):
  return tf.random.stateless_uniform((n,) + shape, [seed, 0], 0.5, levels - 0.5)


def test_class_prior_is_a_per_class_affine_map_with_exact_log_det():
  prior = bijectors.ClassPrior((2, 2, 1), 3)
  perturb_variables(prior, seed=1, scale=0.5)
  labels = tf.constant([2, 0, 1, 2])
  x = tf.random.stateless_normal((4, 2, 2, 1), [1, 1])
  assert_bijective_and_finite(prior, x, x, labels=labels)
  z = prior.inverse(x, labels=labels)
  mean = tf.gather(prior.mean, labels)
  log_scale = tf.gather(prior.log_scale, labels)
  np.testing.assert_allclose(z, (x - mean) / np.exp(log_scale), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      prior.inverse_log_det_jacobian(tf.identity(x), 3, labels=labels),
      brute_force_log_det(lambda v: prior.inverse(v, labels=labels), x), rtol=1e-4)


def test_log_det_equals_the_brute_force_jacobian_for_each_class(flow):
  x = _pixels(CLASSES, 1)
  labels = tf.range(CLASSES)  # image i under class i
  ildj = flow.bijector.inverse_log_det_jacobian(tf.identity(x), 3, labels=labels)
  expected = brute_force_log_det(lambda v: flow.bijector.inverse(v, labels=labels), x)
  np.testing.assert_allclose(ildj, expected, rtol=1e-4, atol=1e-3)
  z = flow.bijector.inverse(tf.identity(x), labels=labels)
  np.testing.assert_allclose(flow.bijector.forward(z, labels=labels), x, atol=1e-3)
  # log p(x | y) = log N(z; 0, I) + log|det dz/dx|, with the brute-force log-det.
  normal = -0.5 * np.sum(np.square(z.numpy()) + np.log(2 * np.pi), axis=(1, 2, 3))
  np.testing.assert_allclose(flow_lib.log_prob(flow, x, labels), normal + expected,
                             rtol=1e-4, atol=1e-3)


def test_each_class_density_integrates_to_one():
  # 2x2x1 images: Monte Carlo over the flow's support (the logit's preimage of (0, 1):
  # slightly wider than [0, K)), uniform proposal.
  config = realnvp_tf.RealNVPConfig(image_shape=(2, 2, 1), num_levels=2, num_scales=1,
                                    num_res_blocks=1, num_filters=4, num_classes=2)
  flow = realnvp_tf.build_realnvp(config)
  perturb_variables(flow, seed=2, scale=0.3)
  alpha, levels = config.logit_alpha, config.num_levels
  low, high = -alpha * levels / (1 - 2 * alpha), (1 - alpha) * levels / (1 - 2 * alpha)
  count = 400_000
  x = tf.random.stateless_uniform((count, 2, 2, 1), [7, 7], low, high)
  volume = (high - low) ** 4
  log_prob = tf.function(lambda v, y: flow_lib.log_prob(flow, v, y))
  for label in range(2):
    density = np.exp(log_prob(x, tf.fill([count], label)).numpy().astype(np.float64))
    estimate = volume * density.mean()
    stderr = volume * density.std() / np.sqrt(count)
    assert abs(estimate - 1.0) < max(4 * stderr, 0.02), (label, estimate, stderr)


def test_the_label_changes_the_density_and_the_samples(flow):
  x = _pixels(4, 9)
  per_class = _per_class(flow, x)
  for label in range(CLASSES):  # column y is log p(x | y), computed alone
    np.testing.assert_allclose(
        per_class[:, label], flow_lib.log_prob(flow, x, tf.fill([4], label)), rtol=1e-5)
  assert np.all(np.ptp(per_class, axis=1) > 1e-3)
  a = flow_lib.sample(flow, 2, 0.5, [3, 4], labels=[0, 0])
  b = flow_lib.sample(flow, 2, 0.5, [3, 4], labels=[1, 1])
  assert relative_error(a, b) > 1e-3


def test_the_couplings_see_the_label():
  # With the per-class prior held at zero, only the couplings' label embeddings can
  # make the density depend on y.
  flow = realnvp_tf.build_realnvp(_config())
  perturb_variables(flow, seed=8)
  prior = flow.bijector.chain.steps[-1]
  assert isinstance(prior, bijectors.ClassPrior)
  prior.mean.assign(tf.zeros_like(prior.mean))
  prior.log_scale.assign(tf.zeros_like(prior.log_scale))
  per_class = _per_class(flow, _pixels(3, 4))
  assert np.all(np.ptp(per_class, axis=1) > 1e-3), per_class


def test_labels_are_required_checked_and_refused_by_unconditional_flows(flow):
  x = _pixels(2, 1)
  with pytest.raises(ValueError, match="class-conditional .3 classes.: pass labels"):
    flow.log_prob(x)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"class indices in \[0, 3\)"):
    flow_lib.log_prob(flow, x, [0, 3])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"class indices in \[0, 3\)"):
    flow_lib.log_prob(flow, x, [-1, 0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="one class per image"):
    flow_lib.log_prob(flow, x, [0, 1, 2])
  with pytest.raises(ValueError, match="integers"):
    flow_lib.log_prob(flow, x, [0.0, 1.0])
  plain = realnvp_tf.build_realnvp(_config(num_classes=0))
  with pytest.raises(ValueError, match="unconditional"):
    flow_lib.log_prob(plain, x, [0, 1])
  with pytest.raises(ValueError, match="num_classes must be an integer >= 0"):
    _config(num_classes=-1)


def test_posterior_is_bayes_rule():
  likelihoods = np.array([[-3.0, -1.0, -2.0], [-5.0, -5.0, -4.0]])
  counts = [10, 0, 30]
  prior = conditional.log_prior_from_counts(counts)
  np.testing.assert_allclose(np.exp(prior), np.array([11, 1, 31]) / 43, rtol=1e-6)
  out = conditional.posterior(likelihoods, prior)
  joint = np.exp(likelihoods) * np.exp(prior)
  np.testing.assert_allclose(out["probabilities"], joint / joint.sum(1, keepdims=True),
                             rtol=1e-5)
  np.testing.assert_allclose(out["log_prob"], np.log(joint.sum(1)), rtol=1e-5)
  np.testing.assert_array_equal(out["labels"], joint.argmax(1))


def test_two_replicas_compute_the_one_device_gradients_with_labels(tmp_path):
  config = dict(trainer_fixtures.model_config().__dict__, num_classes=10)
  model_config = realnvp_tf.RealNVPConfig(**config)
  trainers = [training.Trainer(model_config, trainer_fixtures.train_config(),
                               str(tmp_path / f"run{n}"), trainer_fixtures.strategy(n))
              for n in (1, 2)]
  perturb_variables(trainers[0].state.flow, seed=4)
  trainer_fixtures.copy_state(trainers[0], trainers[1])
  batch = (trainer_fixtures.uneven_images(3), tf.range(16) % 10)
  one, two = (trainer_fixtures.gradients(t, batch) for t in trainers)
  assert abs(one["bits"] - two["bits"]) < 1e-5

  def flat(gradients):
    return np.concatenate([np.ravel(g) for g in gradients])

  assert relative_error(flat(two["gradients"]), flat(one["gradients"])) < 1e-4
  # The labels matter to the loss: other labels, other gradients.
  other = trainer_fixtures.gradients(trainers[0], (batch[0], (batch[1] + 1) % 10))
  assert abs(other["bits"] - one["bits"]) > 1e-4
  for trainer in trainers:
    trainer.close()


def test_one_training_step_makes_the_density_depend_on_the_label(tmp_path):
  config = dict(trainer_fixtures.model_config().__dict__, num_classes=10)
  trainer = training.Trainer(realnvp_tf.RealNVPConfig(**config),
                             trainer_fixtures.train_config(), str(tmp_path / "run"),
                             trainer_fixtures.strategy(1))
  x = trainer_fixtures.images(5, count=4)
  before = _per_class(trainer.state.flow, x, 10)
  # At initialisation every class has the same density: zero prior parameters and
  # zero last-layer gains hide the label.
  np.testing.assert_allclose(before, before[:, :1].repeat(10, axis=1), rtol=1e-6)
  trainer_fixtures.one_step(trainer, (trainer_fixtures.images(6), tf.range(16) % 10))
  after = _per_class(trainer.state.flow, x, 10)
  assert np.all(np.ptp(after, axis=1) > 1e-4), after
  trainer.close()


def test_a_model_of_other_classes_than_the_data_is_refused_in_one_line(tmp_path):
  config = dict(trainer_fixtures.model_config().__dict__, num_classes=3)
  with pytest.raises(ValueError) as err:
    training.Trainer(realnvp_tf.RealNVPConfig(**config),
                     trainer_fixtures.train_config(), str(tmp_path / "run"),
                     trainer_fixtures.strategy(1))
  assert str(err.value) == ("digits has 10 classes, but the model is conditioned on "
                            "num_classes=3.")
  assert not (tmp_path / "run" / "checkpoints").exists()
  info = realnvp_tf.data.get_dataset_info("digits")
  with pytest.raises(ValueError, match="^digits has 10 classes, but the model is "):
    realnvp_tf.data.require_labels(info, 3)  # eval.py's check
  realnvp_tf.data.require_labels(info, 10)


# A tiny class-conditional run on the digits set, shared by the tests below.
_RUN_CONFIG = realnvp_tf.RealNVPConfig(
    image_shape=(8, 8, 1), num_levels=17, num_scales=2, num_res_blocks=1,
    num_filters=8, num_classes=10)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  # Trained once for the whole test run (both xdist workers read it).
  def train(path):
    trainer = training.Trainer(_RUN_CONFIG, training.TrainConfig(
        dataset="digits", batch_size=64, train_steps=150, eval_every=0,
        checkpoint_every=150, eval_images=0, num_samples=20), str(path / "run"))
    trainer.fit(progress=False)
    trainer.close()
  model_dir = trainer_fixtures.shared_directory(tmp_path_factory, "conditional_run",
                                                train) / "run"
  with open(model_dir / "metrics.json") as f:
    return str(model_dir), json.load(f)


def test_training_separates_the_classes(digits_run):
  model_dir, metrics = digits_run
  model = loading.load(os.path.join(model_dir, "export"))
  x = trainer_fixtures.images(1, count=4)
  after = np.stack([model.log_prob(x, np.full([4], y)).numpy() for y in range(10)], 1)
  assert np.all(np.ptp(after, axis=1) > 0.1)
  train_labels = raw_digits.split("train")[1]
  assert metrics["class_counts"] == np.bincount(train_labels, minlength=10).tolist()
  assert model.metadata["class_counts"] == metrics["class_counts"]


def test_the_generative_classifier_beats_chance_on_digits(digits_run):
  model = loading.load(os.path.join(digits_run[0], "export"))
  images, labels = raw_digits.split("test")
  out = model.classify(images, seed=(0, 0))
  accuracy = float(np.mean(out["labels"] == labels))
  assert accuracy > 0.6, accuracy  # chance: about 0.1
  np.testing.assert_allclose(out["probabilities"].sum(1), 1.0, rtol=1e-5)
  # p(y | x) from log p(x | y) and the prior of the training label counts.
  prior = np.log((np.bincount(raw_digits.split("train")[1], minlength=10) + 1) / 1310)
  joint = out["log_likelihoods"] + prior
  expected = np.exp(joint - joint.max(1, keepdims=True))
  np.testing.assert_allclose(out["probabilities"],
                             expected / expected.sum(1, keepdims=True),
                             rtol=1e-4, atol=1e-6)
  # log_likelihoods: the bits_per_dim signature (same noise) at each label.
  for label in (0, 7):
    bits = model.bits_per_dim(images[:5], (0, 0), np.full([5], label)).numpy()
    np.testing.assert_allclose(-out["log_likelihoods"][:5, label] / (64 * np.log(2)),
                               bits, rtol=1e-5)


def test_eval_reports_the_classifier_and_draws_a_row_per_class(digits_run, tmp_path):
  model_dir = digits_run[0]
  output = tmp_path / "eval.json"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "eval.py"),
       f"--saved_model={model_dir}/export", f"--output={output}", "--temperatures=0.7",
       "--samples_per_class=3"],
      env=trainer_fixtures.env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(output.read_text())
  classifier = metrics["classifier"]
  assert "classifier accuracy" in result.stdout and "-log p(x|y)" in result.stdout
  assert abs(classifier["conditional_bits_per_dim"] - metrics["bits_per_dim"]) < 1e-6
  assert classifier["accuracy"] > 0.6 and classifier["num_images"] == 297
  # Every figure against an independent computation on the same dequantized images
  # (eval.py's: seed 0, noise per image): log p(x | y) of each class from the export,
  # the marginal by numpy's logaddexp with the training-count prior, the accuracies
  # by scikit-learn.
  likelihoods, labels = _class_log_likelihoods(model_dir, "test", seed=0)
  prior = np.log((np.asarray(model_metadata_counts(model_dir)) + 1) / (1300 + 10))
  marginal = np.logaddexp.reduce(likelihoods + prior, axis=1)
  marginal_bits = -marginal / (64 * np.log(2))
  assert classifier["marginal_bits_per_dim"] == pytest.approx(marginal_bits.mean(),
                                                              rel=1e-5)
  assert classifier["marginal_bits_per_dim_stderr"] == pytest.approx(
      marginal_bits.std(ddof=1) / np.sqrt(297), rel=1e-3)
  predicted = (likelihoods + prior).argmax(1)
  assert classifier["accuracy"] == pytest.approx(
      reference_metrics.accuracy(labels, predicted), abs=1.5 / 297)
  assert classifier["accuracy_uniform_prior"] == pytest.approx(
      reference_metrics.accuracy(labels, likelihoods.argmax(1)), abs=1.5 / 297)
  np.testing.assert_allclose(
      classifier["per_class_accuracy"],
      reference_metrics.per_class_recall(labels, predicted, 10), atol=1.5 / 29)
  grid = tf.io.decode_png(tf.io.read_file(metrics["sample_grids"][0])).numpy()
  assert grid.shape[:2] == (10 * 9 + 1, 3 * 9 + 1)  # 10 rows of 3 samples (8x8 + 1)


def model_metadata_counts(model_dir):
  return loading.load(os.path.join(model_dir, "export")).metadata["class_counts"]


def _class_log_likelihoods(model_dir, split, seed):
  """log p(x | y) [N, 10] (float64) of the export on a digits split, dequantized as
  evaluation does (noise of image i from (seed, i)), and the labels."""
  model = loading.load(os.path.join(model_dir, "export"))
  images = data.make_dataset("digits", split, batch_size=500, training=False,
                             seed=seed, labels=True)
  x, labels = next(iter(images))
  likelihoods = np.stack([model.log_prob(x, np.full([len(labels)], y)).numpy()
                          for y in range(10)], axis=1).astype(np.float64)
  return likelihoods, labels.numpy()


def test_training_reports_the_classifier_and_a_typicality_reference_of_the_marginal(
    digits_run):
  model_dir, metrics = digits_run
  counts = np.asarray(metrics["class_counts"])
  prior = np.log((counts + 1) / (counts.sum() + 10))
  # The classifier on the test split, as the run's closing lines give it.
  likelihoods, labels = _class_log_likelihoods(model_dir, "test", seed=0)
  classifier = metrics["classifier"]
  assert (classifier["num_images"] == 297
          and classifier["prior"] == "training label counts")
  assert classifier["accuracy"] == pytest.approx(
      np.mean((likelihoods + prior).argmax(1) == labels), abs=1.5 / 297)
  assert classifier["conditional_bits_per_dim"] == pytest.approx(
      metrics["bits_per_dim"], rel=1e-6)
  # The typicality reference: the marginal -log p(x) of the validation images with
  # the training-count prior, mean and spread.
  likelihoods, _ = _class_log_likelihoods(model_dir, "validation", seed=0)
  bits = -np.logaddexp.reduce(likelihoods + prior, axis=1) / (64 * np.log(2))
  reference = metrics["typicality_reference"]
  assert reference["split"] == "validation" and reference["num_images"] == 200
  assert reference["mean"] == pytest.approx(bits.mean(), rel=1e-5)
  assert reference["std"] == pytest.approx(bits.std(ddof=1), rel=1e-3)


def test_the_classifier_figures_on_a_skewed_prior_against_a_brute_force_count():
  # Likelihoods and a prior where the prior changes decisions, so that accuracy with
  # and without it, per class, differ; each against scikit-learn on the predictions
  # made here, the marginal against numpy's logaddexp.
  from realnvp_tf.evaluation import classifier
  rng = np.random.default_rng(7)
  labels = rng.integers(0, 3, 60)
  likelihoods = rng.normal(0.0, 2.0, (60, 3)) - 700.0
  likelihoods[np.arange(60), labels] += 1.0  # weakly informative
  prior = np.log([0.7, 0.2, 0.1])
  images = tf.constant(np.arange(60, dtype=np.float32))
  dataset = tf.data.Dataset.from_tensor_slices(
      (images, labels.astype(np.int32))).batch(7)

  def lookup(batch):
    return likelihoods[batch.numpy().astype(int)]

  result = classifier.evaluate_classifier(lookup, dataset, prior, (4, 4, 2), "skewed")
  with_prior, without = (likelihoods + prior).argmax(1), likelihoods.argmax(1)
  assert (with_prior != without).sum() >= 5  # the prior matters here
  assert result["accuracy"] == reference_metrics.accuracy(labels, with_prior)
  assert result["accuracy_uniform_prior"] == reference_metrics.accuracy(labels, without)
  np.testing.assert_array_equal(
      result["per_class_accuracy"],
      reference_metrics.per_class_recall(labels, with_prior, 3))
  marginal = np.logaddexp.reduce(likelihoods + prior, axis=1)
  bits = -marginal / (32 * np.log(2))
  assert result["marginal_bits_per_dim"] == pytest.approx(bits.mean(), rel=1e-12)
  assert result["marginal_bits_per_dim_stderr"] == pytest.approx(
      bits.std(ddof=1) / np.sqrt(60), rel=1e-9)
  truth = -likelihoods[np.arange(60), labels] / (32 * np.log(2))
  assert result["conditional_bits_per_dim"] == pytest.approx(truth.mean(), rel=1e-12)
  assert result["num_images"] == 60 and result["prior"] == "skewed"


def test_a_tensorflow_only_process_serves_the_conditional_export(digits_run, tmp_path):
  model_dir = digits_run[0]
  path = os.path.join(model_dir, "export")
  images, _ = raw_digits.split("test")
  np.save(tmp_path / "x.npy", images[:6])
  script = textwrap.dedent(f"""
      import sys
      import numpy as np
      import tensorflow as tf
      m = tf.saved_model.load({path!r})
      x = np.load({str(tmp_path / 'x.npy')!r})
      values = x.astype(np.float32) + 0.5
      labels = np.array([0, 1, 2, 3, 4, 9], np.int32)
      z = m.encode(values, labels)["z"]
      out = dict(
          log_prob=m.log_prob(values, labels)["log_prob"].numpy(),
          bits=m.bits_per_dim(x, labels, [1, 2])["bits_per_dim"].numpy(),
          probabilities=m.classify(x, [1, 2])["probabilities"].numpy(),
          samples=m.sample(labels, 0.7, [3, 4])["values"].numpy(),
          roundtrip=m.decode(z, labels)["values"].numpy(),
          ood=m.ood_scores(x, [1, 2])["bits_per_dim"].numpy(),
          log_prior=m.log_prior.numpy())
      try:
        m.log_prob(values, np.array([0, 1, 2, 3, 4, 10], np.int32))
      except tf.errors.InvalidArgumentError as e:
        out["error"] = np.array(e.message)
      np.savez({str(tmp_path / 'out.npz')!r}, **out)
      loaded = sorted(name for name in sys.modules
                      if name.split(".")[0] in ("realnvp_tf", "tensorflow_probability"))
      assert not loaded, loaded
  """)
  result = subprocess.run([sys.executable, "-c", script],
                          env=dict(trainer_fixtures.env(), PYTHONPATH=""),
                          capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  # Against the run directory's checkpoint, in this process.
  model = loading.load(model_dir)
  labels = np.array([0, 1, 2, 3, 4, 9])
  values = images[:6].astype(np.float32) + 0.5
  assert relative_error(out["log_prob"], model.log_prob(values, labels)) < 1e-4
  assert relative_error(out["bits"],
                        model.bits_per_dim(images[:6], (1, 2), labels)) < 1e-4
  np.testing.assert_allclose(out["probabilities"], model.classify(images[:6], (1, 2))[
      "probabilities"], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(out["roundtrip"], values, atol=1e-2)
  noise = tf.random.stateless_normal((6, 8, 8, 1), [3, 4])
  expected = model.decode(0.7 * noise, labels)["values"]
  assert relative_error(out["samples"], expected) < 1e-3
  # The marginal p(x) = sum_y p(x | y) p(y) drives the OOD scores.
  classify = model.classify(images[:6], (1, 2))
  np.testing.assert_allclose(out["ood"], classify["bits_per_dim"], rtol=1e-5)
  np.testing.assert_allclose(np.exp(out["log_prior"]).sum(), 1.0, rtol=1e-5)
  assert "labels must be class indices in [0, 10)" in str(out["error"])


def test_loaded_models_refuse_bad_labels_in_one_line(digits_run):
  model = loading.load(os.path.join(digits_run[0], "export"))
  x = np.full((2, 8, 8, 1), 3.5, np.float32)
  for labels, message in [([0, 10], r"class indices in \[0, 10\); got 10 at index 1"),
                          ([-2, 0], r"got -2 at index 0"),
                          ([0], "a vector of 2 classes"),
                          ([0.5, 1.0], "integers")]:
    for method, args in ((model.log_prob, (x,)), (model.encode, (x,)),
                         (model.sample, (2,))):
      with pytest.raises(ValueError, match=message) as error:
        method(*args, labels=labels)
      assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match="decode needs labels, one class per image"):
    model.decode(x)
  samples = model.sample(temperature=0.0, labels=[3, 3])["values"].numpy()
  np.testing.assert_allclose(samples[0], samples[1], atol=1e-5)  # T = 0: the mode


def test_without_labels_a_conditional_model_is_its_marginal(digits_run):
  # One interface: no labels means p(x) = sum_y p(x | y) p(y), for the run
  # directory's model as for its export, against numpy on the per-class figures.
  model_dir, metrics = digits_run
  images, _ = raw_digits.split("test")
  values = images[:5].astype(np.float32) + 0.5
  counts = np.asarray(metrics["class_counts"])
  prior = np.log((counts + 1) / (counts.sum() + 10))
  for model in (loading.load(os.path.join(model_dir, "export")),
                loading.load(model_dir)):
    per_class = np.stack([model.log_prob(values, np.full([5], y)).numpy()
                          for y in range(10)], axis=1).astype(np.float64)
    marginal = np.logaddexp.reduce(per_class + prior, axis=1)
    np.testing.assert_allclose(model.log_prob(values), marginal, rtol=1e-5)
    bits = np.stack([model.bits_per_dim(images[:5], (1, 2), np.full([5], y)).numpy()
                     for y in range(10)], axis=1).astype(np.float64)
    expected = -np.logaddexp.reduce(-bits * 64 * np.log(2) + prior, axis=1) / (
        64 * np.log(2))
    np.testing.assert_allclose(model.bits_per_dim(images[:5], (1, 2)), expected,
                               rtol=1e-5)
    # Samples of p(x): each is the sample of its drawn label with the same seed.
    drawn = model.sample(6, 0.7, (3, 4))["values"].numpy()
    per_label = np.stack([model.sample(6, 0.7, (3, 4), labels=np.full([6], y))[
        "values"].numpy() for y in range(10)])
    errors = np.abs(per_label - drawn).reshape(10, 6, -1).max(axis=2)
    assert np.all(errors.min(axis=0) < 1e-4), errors


def test_train_py_refuses_a_dataset_without_labels_in_one_line(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(4):  # loose files: no class subfolders
    tf.io.write_file(str(folder / f"{i}.png"),
                     tf.io.encode_png(np.full((8, 8, 1), 40 * i, np.uint8)))
  result = subprocess.run(
      trainer_fixtures.train_cmd(str(tmp_path / "run"), f"--image_dir={folder}",
                                 "--image_size=8", "--channels=1", "--batch_size=2",
                                 "--class_conditional"),
      env=trainer_fixtures.env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "no class labels" in lines[0], result.stderr[-2000:]
  assert "one subfolder per class" in lines[0]


def test_train_py_conditions_on_the_class_folders_of_an_image_folder(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "images"
  for name, low in (("dark", 0), ("bright", 150)):  # two classes, told by brightness
    (folder / name).mkdir(parents=True)
    for i in range(40):
      image = rng.integers(low, low + 100, (8, 8, 1)).astype(np.uint8)
      tf.io.write_file(str(folder / name / f"{i}.png"), tf.io.encode_png(image))
  model_dir = tmp_path / "run"
  result = subprocess.run(
      trainer_fixtures.train_cmd(str(model_dir), f"--image_dir={folder}",
                                 "--image_size=8", "--channels=1", "--batch_size=16",
                                 "--train_steps=40", "--eval_every=0",
                                 "--checkpoint_every=40", "--class_conditional"),
      env=trainer_fixtures.env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((model_dir / "metrics.json").read_text())
  # The closing lines give the classifier's accuracy, its headline figure.
  accuracy = metrics["classifier"]["accuracy"]
  assert f"classifier accuracy: {accuracy:.4f}" in result.stdout.splitlines()[-1]
  assert metrics["class_names"] == ["bright", "dark"]  # sorted folder names
  assert metrics["model_config"]["num_classes"] == 2
  model = loading.load(str(model_dir / "export"))
  assert model.class_names == ["bright", "dark"]
  images = np.stack([rng.integers(150, 250, (8, 8, 1)),
                     rng.integers(0, 100, (8, 8, 1))])
  out = model.classify(images.astype(np.uint8))
  np.testing.assert_array_equal(out["labels"], [0, 1])
