"""RealNVP image density estimation in TensorFlow 2, Keras 3 and TFP.

Dinh, Sohl-Dickstein and Bengio, "Density estimation using Real NVP", ICLR 2017.

The public API, one import away:

    import realnvp_tf
    flow = realnvp_tf.build_realnvp(realnvp_tf.RealNVPConfig(image_shape=(28, 28, 1)))
    model = realnvp_tf.load("runs/mnist/export")
    model = realnvp_tf.load_pretrained("digits")  # shipped in the package

The names below are loaded on first use, so that importing the package costs nothing
and changes nothing in the process (the programs in `realnvp_tf.apps` quiet
TensorFlow's start-up themselves). The sub-packages: `model`, `data`, `training`,
`runs`, `evaluation`, `ood`, `pretrained`, `apps` (docs/architecture.md).
"""

import importlib

# Public name -> the module that defines it.
_PUBLIC = {
    "RealNVPConfig": "realnvp_tf.model.config",
    "TrainConfig": "realnvp_tf.training.config",
    "bits_per_dim": "realnvp_tf.model.flow",
    "build_realnvp": "realnvp_tf.model.flow",
    "load": "realnvp_tf.runs.loading",
    "load_pretrained": "realnvp_tf.pretrained",
    "log_prob": "realnvp_tf.model.flow",
    "sample": "realnvp_tf.model.flow",
    "to_images": "realnvp_tf.model.flow",
    "weight_scale_variables": "realnvp_tf.model.flow",
}
_SUBPACKAGES = ("apps", "data", "evaluation", "model", "ood", "pretrained", "runs",
                "training")

__all__ = sorted(_PUBLIC)


def __getattr__(name):
  if name in _PUBLIC:
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value
  if name in _SUBPACKAGES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_PUBLIC) | set(_SUBPACKAGES))
