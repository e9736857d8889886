"""Any tensorflow-datasets image set by name (`--dataset=tfds:NAME[/CONFIG]`): its
`DatasetInfo` from the builder (image feature, shape, splits, class labels)."""

from __future__ import annotations

import dataclasses

from realnvp_tf.data import registry
from realnvp_tf.data import transforms
from realnvp_tf.data.dataset_info import DatasetInfo
from realnvp_tf.data.tfds_source import TfdsSource

TFDS_PREFIX = "tfds:"
# Validation held out of the training split of a tfds set that has none besides its
# test split: the last images, at most this many and at most a tenth.
TFDS_HELD_OUT = 5_000


def is_tfds_name(dataset: str) -> bool:
  """Whether `dataset` names a tfds set (`tfds:NAME[/CONFIG]`)."""
  return dataset.startswith(TFDS_PREFIX) and len(dataset) > len(TFDS_PREFIX)


def _class_label(features) -> str | None:
  """The key of the class label feature: "label" when it is a ClassLabel, else the
  only ClassLabel feature; None when there is no such feature (or several)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  keys = [key for key, feature in features.items()
          if isinstance(feature, tfds.features.ClassLabel)]
  if "label" in keys:
    return "label"
  return keys[0] if len(keys) == 1 else None


def _label_fields(features) -> dict:
  """The builder's class labels: `DatasetInfo`'s `num_classes` and `class_names`, and
  the source's `label_key` (empty without labels)."""
  key = _class_label(features)
  if key is None:
    return {}
  feature = features[key]
  return {"num_classes": int(feature.num_classes),
          "class_names": tuple(feature.names), "label_key": key}


def describe(spec: str, data_dir=None, manual_dir=None, image_size=None) -> DatasetInfo:
  """The `DatasetInfo` of `--dataset=tfds:NAME[/CONFIG]`, preparing it if needed.

  The image feature, its shape and the splits come from the builder: train is
  "train"; test is "test" (or "validation" when there is no test split); validation
  is "validation" when the set has both, else the last images of train (at most
  TFDS_HELD_OUT, at most a tenth). `image_size` (H, W) resizes to cover and
  centre-crops, as for image folders; images of varying size need it. Class labels:
  the ClassLabel feature "label", else the only ClassLabel feature (none otherwise).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = spec[len(TFDS_PREFIX):]
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  (tfds's not-found errors vary)
    raise ValueError(f"dataset={spec}: tensorflow-datasets has no such dataset "
                     f"({str(e).splitlines()[0][:200]}).") from None
  images = [key for key, feature in builder.info.features.items()
            if isinstance(feature, tfds.features.Image)]
  if not images:
    raise ValueError(f"dataset={spec} has no image feature; its features are "
                     f"{', '.join(builder.info.features)}.")
  feature = builder.info.features[images[0]]
  height, width, channels = feature.shape
  preprocess = ()
  if image_size is not None:
    height, width = image_size
    preprocess = (transforms.Fit((height, width)),)
  elif height is None or width is None:
    raise ValueError(f"dataset={spec} has images of varying size; pass "
                     f"image_size=HxW.")
  source = TfdsSource(spec, name, {}, image_key=images[0],
                      file_owners=registry.file_owners, data_dir=data_dir,
                      manual_dir=manual_dir)
  builder = source.prepare()
  counts = {split: split_info.num_examples
            for split, split_info in builder.info.splits.items()}
  if "train" not in counts:
    raise ValueError(f"dataset={spec} has no 'train' split (it has "
                     f"{', '.join(counts)}).")
  test = ("test" if "test" in counts else
          "validation" if "validation" in counts else None)
  if test is not None and "validation" in counts and test != "validation":
    validation, train, num_train = "validation", "train", counts["train"]
    num_validation = counts["validation"]
  else:
    num_validation = min(TFDS_HELD_OUT, counts["train"] // 10)
    num_train = counts["train"] - num_validation
    train, validation = f"train[:{num_train}]", f"train[{num_train}:]"
  if test is None:  # no test split either: hold it out of train too
    num_test = num_validation
    num_train -= num_test
    train = f"train[:{num_train}]"
    validation = f"train[{num_train}:{num_train + num_validation}]"
    test = f"train[{num_train + num_validation}:]"
  else:
    num_test = counts[test]
  # Labels from the prepared builder: some sets name their classes only then.
  labels = _label_fields(builder.info.features)
  splits = {"train": train, "validation": validation, "test": test}
  source = dataclasses.replace(source, splits=splits,
                               label_key=labels.pop("label_key", "label"))
  return DatasetInfo(name=spec, image_shape=(height, width, channels), num_levels=256,
                     num_train=num_train, num_validation=num_validation,
                     num_test=num_test, source=source, preprocess=preprocess,
                     **labels)
