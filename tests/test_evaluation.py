"""Evaluation figures against direct computations."""

import math

import numpy as np
import pytest
import tensorflow as tf

from realnvp_tf.evaluation import likelihood

SHAPE = (4, 4, 1)
NUM_DIMS = 16


def _dequantized_batches(num_batches, batch_size, seed):
  pixels = tf.random.stateless_uniform((num_batches, batch_size) + SHAPE, [seed, 0], 0,
                                       17, tf.int32)
  noise = tf.random.stateless_uniform(pixels.shape, [seed, 1], 0.0, 0.999)
  return tf.data.Dataset.from_tensor_slices(tf.cast(pixels, tf.float32) + noise)


class _RecordingLogProb:
  """A log-density with a large dynamic range (a naive exp under- or overflows); it
  records every batch it is given."""

  def __init__(self):
    self.inputs = []

  def __call__(self, images):
    self.inputs.append(images.numpy())
    return -300.0 * tf.reduce_sum(tf.square(tf.sin(images)), axis=[1, 2, 3])


@pytest.mark.parametrize("num_samples", [1, 4])
def test_importance_weighted_bound_is_the_log_mean_exp_of_its_evaluations(num_samples):
  dataset = _dequantized_batches(num_batches=2, batch_size=3, seed=5)
  log_prob = _RecordingLogProb()
  # Eager: the recorder needs every call's concrete batch.
  tf.config.run_functions_eagerly(True)
  try:
    result = likelihood.evaluate_bits_per_dim(
        log_prob, dataset, SHAPE, num_dequant_samples=num_samples, seed=9)
  finally:
    tf.config.run_functions_eagerly(False)
  assert len(log_prob.inputs) == 2 * num_samples
  per_image = []
  for batch_index, batch in enumerate(dataset):
    draws = log_prob.inputs[batch_index * num_samples:(batch_index + 1) * num_samples]
    np.testing.assert_array_equal(draws[0], batch.numpy())  # the dataset's own noise
    for draw in draws[1:]:  # more noise draws of the same integer image
      np.testing.assert_array_equal(np.floor(draw), np.floor(batch.numpy()))
      assert not np.array_equal(draw, draws[0])
    # Direct: -log((1/S) sum_s p(x + u_s)) / (D ln 2), in float64, with numpy's own
    # logaddexp rather than the evaluation's log-mean-exp.
    values = np.stack([-300.0 * np.sum(np.square(np.sin(d.astype(np.float64))),
                                       axis=(1, 2, 3)) for d in draws])
    log_mean = np.logaddexp.reduce(values, axis=0) - math.log(num_samples)
    per_image.append(-log_mean / (NUM_DIMS * math.log(2.0)))
  per_image = np.concatenate(per_image)
  np.testing.assert_allclose(result["per_image"], per_image, rtol=1e-5)
  assert result["bits_per_dim"] == pytest.approx(per_image.mean(), rel=1e-5)
  assert result["bits_per_dim_stderr"] == pytest.approx(
      per_image.std(ddof=1) / math.sqrt(per_image.size), rel=1e-4)
  assert result["num_images"] == 6


def test_importance_weighted_bound_needs_at_least_one_sample():
  dataset = _dequantized_batches(num_batches=1, batch_size=4, seed=6)
  with pytest.raises(ValueError, match="num_dequant_samples"):
    likelihood.evaluate_bits_per_dim(_RecordingLogProb(), dataset, SHAPE,
                                     num_dequant_samples=0)


# The pipeline's own functions stay traced under run_functions_eagerly, as wanted.
@pytest.mark.filterwarnings("ignore:Even though the `tf.config.experimental_run")
def test_one_noise_rule_for_the_pipeline_the_bound_and_the_export(tmp_path):
  # Image i of a split evaluated with seed s gets the same noise in the evaluation
  # pipeline, in the SavedModel's bits_per_dim (seed (s, i)) and, for the bound's
  # extra draws, whatever the batch size; each against fold_in computed here.
  import realnvp_tf
  from realnvp_tf import data
  from realnvp_tf.runs import export
  seed, shape = 3, (8, 8, 1)

  def noise(index, stream, draw=None):
    key = tf.constant([seed, stream], tf.int64)
    if draw is not None:
      key = tf.random.experimental.stateless_fold_in(key, tf.constant(draw, tf.int64))
    key = tf.random.experimental.stateless_fold_in(key, tf.constant(index, tf.int64))
    return tf.random.stateless_uniform(shape, key).numpy()

  batch = next(iter(data.make_dataset("digits", "test", batch_size=40,
                                      training=False, seed=seed))).numpy()
  pixels = np.floor(batch)
  np.testing.assert_array_equal(batch, pixels + np.stack([noise(i, 0)
                                                          for i in range(40)]))
  log_prob = _RecordingLogProb()
  tf.config.run_functions_eagerly(True)
  try:
    results = [likelihood.evaluate_bits_per_dim(
        log_prob, data.make_dataset("digits", "test", batch_size=size, training=False,
                                    seed=seed).take(2), shape, num_dequant_samples=2,
        seed=seed) for size in (7, 20)]
  finally:
    tf.config.run_functions_eagerly(False)
  np.testing.assert_array_equal(results[0]["per_image"], results[1]["per_image"][:14])
  second_draw = log_prob.inputs[1]  # batch 0's extra draw, batch size 7
  np.testing.assert_array_equal(second_draw, pixels[:7] + np.stack(
      [noise(i, 4, draw=1) for i in range(7)]))
  flow = realnvp_tf.build_realnvp(realnvp_tf.RealNVPConfig(
      image_shape=shape, num_levels=17, num_scales=1, num_res_blocks=1, num_filters=4))
  model = realnvp_tf.load(export.export_saved_model(flow, str(tmp_path / "export")))
  exported = model.bits_per_dim(pixels[10:30].astype(np.uint8), (seed, 10)).numpy()
  direct = -flow.log_prob(batch[10:30]).numpy() / (64 * math.log(2.0))
  np.testing.assert_allclose(exported, direct, rtol=1e-5)
