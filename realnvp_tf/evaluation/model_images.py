"""The images a trained model is evaluated or scored on: a dataset (by default the
model's own, as its metadata records) or a folder, resolved for the model."""

import dataclasses

from realnvp_tf import data
from realnvp_tf.data import image_inputs


def data_info(model, dataset=None, image_dir=None, data_dir=None, manual_dir=None,
              model_images=True):
  """The `DatasetInfo` of the images to score `model` on: `image_dir` (a folder,
  brought to the model's size and channels), `dataset` (a name or tfds:NAME), or,
  with neither, the images the model was trained on (its metadata says which).
  `model_images`: refuse a dataset whose images are not the model's (shape, K)."""
  height, width, channels = model.image_shape
  size = f"{height}x{width}"
  if image_dir:
    spec = data.DataSpec(data.IMAGE_DIR, image_dir=image_dir, image_size=size,
                         channels=channels)
  elif dataset:
    spec = data.DataSpec(dataset)
  else:
    recorded = model.metadata.get("data") or {"dataset": model.dataset}
    if recorded.get("dataset") is None:
      raise ValueError("The model does not record its dataset; pass dataset=NAME.")
    spec = data.DataSpec.from_dict(recorded)
  if data.is_tfds_name(spec.dataset):
    spec = dataclasses.replace(spec, image_size=size)
  info = data.resolve(spec, data_dir, manual_dir)
  if model_images:
    data.require_image_format(info, model.image_shape, model.num_levels)
  return info


def split_inputs(model, dataset=None, image_dir=None, split="test", data_dir=None,
                 manual_dir=None):
  """`data.image_inputs.ImageInputs` of a split of `dataset` or `image_dir` (default:
  the model's own images), brought to the model's shape and K."""
  info = data_info(model, dataset, image_dir, data_dir, manual_dir, model_images=False)
  images = data.make_uint8_dataset(info, split)
  return image_inputs.dataset_inputs(info, split, model.image_shape, model.num_levels,
                                     images)


def evaluation_dataset(model, info, split, batch_size, seed):
  """The evaluation batches of `split` for `model`: dequantized images with seeded
  noise, and for a class-conditional model (images, labels), its own classes
  required of the data, so that its figure is -log p(x | y)."""
  if model.num_classes:
    data.require_labels(info, model.num_classes)
  return data.make_dataset(info, split, batch_size=batch_size, training=False,
                           seed=seed, labels=bool(model.num_classes))
