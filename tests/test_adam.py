"""FusedAdam: the one place that reads private Keras attributes, and its fallback."""

import keras
import numpy as np
import tensorflow as tf

from realnvp_tf.training import adam
from realnvp_tf.training import schedule


def test_the_pinned_keras_has_what_fused_adam_reads():
  optimizer = keras.optimizers.Adam()
  optimizer.build([tf.Variable([1.0])])
  missing = adam.missing_private_attributes(optimizer)
  assert not missing, (
      f"Keras {keras.__version__}'s Adam no longer has {', '.join(missing)}: "
      f"realnvp_tf.training.adam.FusedAdam falls back to optimizer.apply (correct, "
      f"slower). "
      f"Update FusedAdam for this Keras or pin the Keras of requirements.txt.")


def _train(steps=3):
  strategy = tf.distribute.get_strategy()
  variables = [tf.Variable([1.0, -2.0, 3.0]), tf.Variable([[0.5], [0.25]])]
  fused = adam.FusedAdam(keras.optimizers.Adam(schedule.WarmupDecay(0.1, 2)), variables)
  for step in range(steps):
    gradients = [tf.constant([0.3, -0.1, 2.0]) * (step + 1),
                 tf.constant([[-1.0], [0.5]]) / (step + 1)]
    fused.apply(strategy, gradients)
  return fused, [v.numpy() for v in variables]


def test_fallback_gives_the_fused_kernels_update(monkeypatch):
  fused, fused_values = _train()
  # A Keras release that renamed what FusedAdam reads: an attribute Adam lacks.
  monkeypatch.setattr(adam, "PRIVATE_ATTRIBUTES",
                      adam.PRIVATE_ATTRIBUTES + ("_renamed_in_a_later_release",))
  fallback, fallback_values = _train()
  assert fused.fused and not fallback.fused
  assert int(fused.iterations.numpy()) == int(fallback.iterations.numpy()) == 3
  for a, b in zip(fused_values, fallback_values, strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)  # float32 round-off
  # And both are Adam: the first step moves each weight by the learning rate (0.05
  # in the warm-up's first step) against its gradient's sign.
  _, one_step = _train(steps=1)
  np.testing.assert_allclose(one_step[0], [0.95, -1.95, 2.95], rtol=1e-5)
  np.testing.assert_allclose(one_step[1], [[0.55], [0.2]], rtol=1e-5)
