"""Evaluation: test negative log-likelihood in bits/dim, and sample grids."""

import math
import os

import numpy as np
import tensorflow as tf

from realnvp_tf import class_evaluation
from realnvp_tf import data
from realnvp_tf import loading
from realnvp_tf import model_data
from realnvp_tf import ood_evaluation
from realnvp_tf.data import image_inputs


def evaluate_bits_per_dim(log_prob_fn, dataset, image_shape, num_dequant_samples=1,
                          seed=0):
  """Bits/dim of every image of `dataset`: mean, standard error and count.

  Args:
    log_prob_fn: maps float32 [B, H, W, C] pixels in [0, K) to [B] log-densities
      (a flow's `log_prob`, or a SavedModel's `log_prob` signature); for batches
      with labels, `log_prob_fn(images, labels)` gives log p(x | y).
    dataset: batches of dequantized images x + u (`data.make_dataset(training=False)`),
      or (images, labels) batches (`labels=True`).
    image_shape: (H, W, C).
    num_dequant_samples: S. With S > 1 the figure is the importance-weighted bound
      -log mean_s p(x + u_s) of the discrete image x (Theis et al.), tighter as S
      grows; the first u_s is the dataset's own noise, so S = 1 is the usual figure.
    seed: seed of the extra noise draws u_2..u_S.

  Returns:
    dict(bits_per_dim, bits_per_dim_stderr, num_images, per_image) with per_image a
    float64 numpy array.
  """
  if num_dequant_samples < 1:
    raise ValueError(f"num_dequant_samples must be >= 1; got {num_dequant_samples}.")
  num_dims = math.prod(image_shape)
  log_prob_fn = tf.function(log_prob_fn, reduce_retracing=True)
  per_image = []
  for batch_index, batch in enumerate(dataset):
    batch, *labels = batch if isinstance(batch, tuple) else (batch,)
    log_probs = [log_prob_fn(batch, *labels)]
    pixels = tf.floor(batch)
    for s in range(1, num_dequant_samples):
      noise = tf.random.stateless_uniform(tf.shape(batch), [seed * 1_000_003 + s, batch_index])
      log_probs.append(log_prob_fn(data.add_noise(pixels, noise), *labels))
    log_probs = tf.stack(log_probs).numpy().astype(np.float64)
    bound = _log_mean_exp(log_probs) if num_dequant_samples > 1 else log_probs[0]
    per_image.append(-bound / (num_dims * math.log(2.0)))
  per_image = np.concatenate(per_image) if per_image else np.zeros([0])
  if per_image.size == 0:
    raise ValueError("The evaluation dataset is empty.")
  stderr = per_image.std(ddof=1) / math.sqrt(per_image.size) if per_image.size > 1 else 0.0
  return dict(bits_per_dim=float(per_image.mean()), bits_per_dim_stderr=float(stderr),
              num_images=int(per_image.size), per_image=per_image)


def _log_mean_exp(values):
  top = values.max(axis=0)
  return top + np.log(np.mean(np.exp(values - top), axis=0))


def image_grid(images, num_levels, columns=None):
  """uint8 images [N, H, W, C] with pixels 0..K-1 -> one uint8 grid image, 0..255."""
  images = np.asarray(images)
  count, height, width, channels = images.shape
  columns = columns or int(math.ceil(math.sqrt(count)))
  rows = int(math.ceil(count / columns))
  scaled = (images.astype(np.int32) * 255 // (num_levels - 1)).astype(np.uint8)
  grid = np.zeros([rows * (height + 1) + 1, columns * (width + 1) + 1, channels],
                  np.uint8)
  for i, image in enumerate(scaled):
    row, col = divmod(i, columns)
    grid[1 + row * (height + 1):1 + row * (height + 1) + height,
         1 + col * (width + 1):1 + col * (width + 1) + width] = image
  return grid


def sample_grid(model, num_samples, temperature, seed):
  """A uint8 grid image of `num_samples` samples at `temperature`."""
  out = model.serving.sample(tf.constant(num_samples, tf.int32),
                             tf.constant(temperature, tf.float32),
                             tf.constant(seed, tf.int32))
  return image_grid(out["images"].numpy(), model.num_levels)


def manifold_grid(model, images, size=8, labels=None):
  """The paper's figure of the latent manifold (its equation 19).

  With z1..z4 the latents of four images, decodes
    z = cos(a) (cos(b) z1 + sin(b) z2) + sin(a) (cos(b) z3 + sin(b) z4)
  over a `size` x `size` grid of angles a, b in [0, pi/2]. A class-conditional
  model (`labels` given, one per image) uses four images of the first image's class
  and decodes with that class.
  """
  images, cls = np.asarray(images), None
  if labels is not None:
    labels = np.asarray(labels)
    cls = int(labels[0])
    images = images[labels == cls]
    if len(images) < 4:
      raise ValueError(f"--manifold needs 4 images of class {cls} in the first batch.")
  per_image = lambda n: None if cls is None else np.full([n], cls, np.int32)
  z = model.encode(images[:4], labels=per_image(4)).numpy()
  angles = np.linspace(0.0, np.pi / 2, size)
  a, b = np.meshgrid(angles, angles, indexing="ij")
  a, b = a.reshape(-1, 1, 1, 1), b.reshape(-1, 1, 1, 1)
  z1, z2, z3, z4 = (z[i][None] for i in range(4))
  latents = (np.cos(a) * (np.cos(b) * z1 + np.sin(b) * z2) +
             np.sin(a) * (np.cos(b) * z3 + np.sin(b) * z4)).astype(np.float32)
  decoded = model.decode(latents, labels=per_image(len(latents)))["images"].numpy()
  return image_grid(decoded, model.num_levels, columns=size)


def classifier_summary(classifier):
  """The lines eval.py prints for a class-conditional model."""
  return (f"marginal bits/dim -log p(x): {classifier['marginal_bits_per_dim']:.5f} "
          f"+- {classifier['marginal_bits_per_dim_stderr']:.5f}\n"
          f"classifier accuracy: {classifier['accuracy']:.4f} (prior p(y): "
          f"{classifier['prior']}; {classifier['accuracy_uniform_prior']:.4f} with a "
          f"uniform prior; {classifier['num_images']} images)")


def write_png(path, image):
  tf.io.gfile.makedirs(os.path.dirname(os.path.abspath(path)))
  tf.io.write_file(path, tf.io.encode_png(image))


def ood_inputs(model, ood_dataset=None, ood_images=None, split="test", count=10_000,
               data_dir=None, manual_dir=None, seed=0):
  """The out-of-distribution set of `ood_evaluation.evaluate`: a synthetic set of
  `count` images, a dataset's `split`, or a folder/glob/array."""
  if ood_images:
    return image_inputs.open_inputs(ood_images, model.image_shape, model.num_levels,
                                    flag="--ood_images")
  if ood_dataset in ood_evaluation.SYNTHETIC:
    return ood_evaluation.synthetic_inputs(ood_dataset, count, model.image_shape,
                                           model.num_levels, seed)
  return model_data.split_inputs(model, ood_dataset, None, split, data_dir, manual_dir)


def run(saved_model=None, model_dir=None, dataset=None, image_dir=None, split="test",
        data_dir=None, manual_dir=None, batch_size=256, num_dequant_samples=1, seed=0,
        temperatures=(), num_samples=64, samples_per_class=8, manifold=False,
        output_dir=".",
        compute_dtype=None, ood_dataset=None, ood_images=None, ood_split="test",
        ood_max_images=None, ood_histogram=None, ood_manual_dir=None):
  """What eval.py does: returns the metrics dict and writes the requested PNGs.

  With `ood_dataset` or `ood_images`, also an OOD evaluation of (up to
  `ood_max_images` of) `split` against that set: `metrics["ood"]`, and the
  `ood_histogram` PNG when a path is given."""
  if bool(saved_model) == bool(model_dir):
    raise ValueError("Pass exactly one of saved_model and model_dir.")
  if saved_model and compute_dtype:
    raise ValueError("--mixed_precision applies to --model_dir; a SavedModel keeps the "
                     "precision it was exported with.")
  model = (loading.load_saved_model(saved_model) if saved_model else
           loading.load_checkpoint(model_dir, compute_dtype))
  info = model_data.data_info(model, dataset, image_dir, data_dir, manual_dir)
  dataset = info.name
  labelled = bool(model.num_classes)
  if labelled:
    data.require_labels(info, model.num_classes)  # its own classes
  images = data.make_dataset(info, split, batch_size=batch_size, training=False,
                             data_dir=data_dir, manual_dir=manual_dir, seed=seed,
                             labels=labelled)
  result = evaluate_bits_per_dim(model.log_prob, images, model.image_shape,
                                 num_dequant_samples=num_dequant_samples, seed=seed)
  metrics = {k: v for k, v in result.items() if k != "per_image"}
  metrics.update(dataset=dataset, split=split, model=model.source,
                 compute_dtype=model.metadata["model"]["compute_dtype"],
                 num_dequant_samples=num_dequant_samples, seed=seed)
  if labelled:
    metrics["classifier"] = class_evaluation.classifier_metrics(model, images)
  for temperature in temperatures:
    path = os.path.join(output_dir, f"samples_t{temperature:g}.png")
    if labelled:  # a row per class
      grid = image_grid(class_evaluation.class_samples(
          model, samples_per_class, temperature, [seed, 0]), model.num_levels,
                        columns=samples_per_class)
    else:
      grid = sample_grid(model, num_samples, temperature, [seed, 0])
    write_png(path, grid)
    metrics.setdefault("sample_grids", []).append(path)
  if ood_dataset or ood_images:
    inside = model_data.split_inputs(model, dataset, image_dir, split, data_dir,
                                     manual_dir)
    count = min(ood_max_images or result["num_images"], result["num_images"])
    outside = ood_inputs(model, ood_dataset, ood_images, ood_split, count, data_dir,
                         ood_manual_dir or manual_dir, seed)
    metrics["ood"], in_scores, out_scores = ood_evaluation.evaluate(
        model, inside, outside, batch_size, seed, ood_max_images)
    if ood_histogram:
      write_png(ood_histogram, ood_evaluation.histogram(in_scores, out_scores))
      metrics["ood"]["histogram"] = ood_histogram
  if manifold:
    first, *first_labels = next(iter(images)) if labelled else (next(iter(images)),)
    path = os.path.join(output_dir, "manifold.png")
    write_png(path, manifold_grid(model, first.numpy(),
                                  labels=first_labels[0].numpy() if labelled else None))
    metrics["manifold"] = path
  return metrics
