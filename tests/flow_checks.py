"""Independent numerical checks shared by the bijector and flow tests.

`assert_bijective_and_finite` makes the checks of TFP's
`bijector_test_util.assert_bijective_and_finite` (which the tensorflow-probability
wheel does not ship): both round trips, finiteness of every output and log-det, and
`fldj(x) == -ildj(forward(x))` in both directions. `brute_force_log_det` computes the
log-det from the full Jacobian with `tf.GradientTape.batch_jacobian` and `slogdet`.
"""

import numpy as np
import tensorflow as tf

EVENT_NDIMS = 3


def relative_error(actual, expected):
  """||actual - expected|| / ||expected|| (Frobenius norms over the whole tensor)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12)


def assert_bijective_and_finite(bijector, x, y, rtol=1e-4, atol=1e-4, **kwargs):
  """TFP's bijective-and-finite contract, for image bijectors (event_ndims 3).

  Fresh tensors go into every call, so that no answer comes from TFP's cache.
  """

  def fresh(t):
    return tf.identity(tf.convert_to_tensor(t, tf.float32))

  f_x = bijector.forward(fresh(x), **kwargs)
  g_y = bijector.inverse(fresh(y), **kwargs)
  x_from_x = bijector.inverse(fresh(f_x), **kwargs)
  y_from_y = bijector.forward(fresh(g_y), **kwargs)
  ildj_f_x = bijector.inverse_log_det_jacobian(fresh(f_x), EVENT_NDIMS, **kwargs)
  fldj_x = bijector.forward_log_det_jacobian(fresh(x), EVENT_NDIMS, **kwargs)
  ildj_y = bijector.inverse_log_det_jacobian(fresh(y), EVENT_NDIMS, **kwargs)
  fldj_g_y = bijector.forward_log_det_jacobian(fresh(g_y), EVENT_NDIMS, **kwargs)
  for name, value in [("f(x)", f_x), ("g(y)", g_y), ("g(f(x))", x_from_x),
                      ("f(g(y))", y_from_y), ("ildj(f(x))", ildj_f_x),
                      ("fldj(x)", fldj_x), ("ildj(y)", ildj_y),
                      ("fldj(g(y))", fldj_g_y)]:
    assert np.all(np.isfinite(value)), f"{name} is not finite"
  np.testing.assert_allclose(x_from_x, x, rtol=rtol, atol=atol)
  np.testing.assert_allclose(y_from_y, y, rtol=rtol, atol=atol)
  np.testing.assert_allclose(-ildj_f_x, fldj_x, rtol=rtol, atol=atol)
  np.testing.assert_allclose(-ildj_y, fldj_g_y, rtol=rtol, atol=atol)


def brute_force_log_det(fn, inputs):
  """log|det d fn(inputs)_i / d inputs_i| per example, from the full Jacobian."""
  inputs = tf.identity(tf.convert_to_tensor(inputs, tf.float32))
  batch = inputs.shape[0]
  flat_in = tf.reshape(inputs, [batch, -1])
  with tf.GradientTape() as tape:
    tape.watch(flat_in)
    outputs = fn(tf.reshape(flat_in, inputs.shape))
    flat_out = tf.reshape(outputs, [batch, -1])
  jacobian = tape.batch_jacobian(flat_out, flat_in)
  return tf.linalg.slogdet(tf.cast(jacobian, tf.float64)).log_abs_determinant.numpy()


def perturb_variables(module, seed=0, scale=0.1):
  """Moves every variable off its initial value, so no layer is an identity.

  Trainable variables get Gaussian noise; batch-norm moving means get noise and
  moving variances a random factor in [0.8, 1.25].
  """
  rng = np.random.default_rng(seed)
  for variable in module.variables:
    shape = variable.shape.as_list()
    if "moving_variance" in variable.name:
      variable.assign(variable * rng.uniform(0.8, 1.25, shape).astype(np.float32))
    else:
      variable.assign_add(rng.normal(0.0, scale, shape).astype(np.float32))
