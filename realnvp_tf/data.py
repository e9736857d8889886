"""Input pipelines: dequantized images in [0, K) for the flow (DESIGN.md section 2).

Every dataset is served as a ``tf.data.Dataset`` of float32 ``[B, H, W, C]`` batches of
``x + u``, where ``x`` holds the integer pixels 0..K-1 and ``u ~ U[0, 1)``; labels are
dropped. The tfds datasets are read through tensorflow-datasets; ``digits`` is
scikit-learn's bundled 8x8 set and needs neither network nor files.

Training pipelines shuffle, apply the paper's random horizontal flips (CIFAR-10, CelebA,
LSUN) and random crops (LSUN), draw fresh noise every epoch, drop the last partial batch
and repeat forever. Evaluation pipelines keep every image in order, never flip, crop
deterministically, and draw the noise of image ``i`` from a stateless generator seeded by
``(seed, i)``: a test NLL is reproducible to the last digit, whatever the batch size or
the number of input pipelines.

Offline use: pass ``manual_dir`` (the official raw files, as tfds expects them) and
optionally ``data_dir`` (where tfds writes the prepared dataset). When the data is not
prepared, no ``manual_dir`` is given and the download host cannot be reached, a
:class:`DataUnavailableError` is raised within seconds instead of tfds's minutes of
retries.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf

__all__ = [
    "DATASET_NAMES",
    "DataUnavailableError",
    "DatasetInfo",
    "add_noise",
    "get_dataset_info",
    "make_dataset",
    "make_distributed_dataset",
    "make_uint8_dataset",
    "prepare_dataset",
]

AUTOTUNE = tf.data.AUTOTUNE

# Seconds the network check waits for a TCP connection to a download host.
NETWORK_TIMEOUT_S = 3.0


class DataUnavailableError(RuntimeError):
    """The dataset is neither prepared nor obtainable (no network, missing files)."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset as the flow sees it.

    Attributes:
      name: the name used by this package (one of ``DATASET_NAMES``).
      image_shape: ``(H, W, C)`` of the images fed to the flow (after preprocessing).
      num_levels: K, the number of pixel values (pixels are integers 0..K-1).
      num_train: images in the training split.
      num_test: images in the evaluation split.
      train_split: tfds split string used for ``split="train"``.
      test_split: tfds split string used for ``split="test"``.
      tfds_name: tfds builder name (``None`` for the embedded ``digits`` set).
      random_flips: whether training applies random horizontal flips (paper).
      in_memory: whether the decoded images are cached in memory.
      manual_files: file names tfds expects in ``manual_dir`` (empty for ``digits``).
    """

    name: str
    image_shape: tuple[int, int, int]
    num_levels: int
    num_train: int
    num_test: int
    train_split: str
    test_split: str
    tfds_name: str | None
    random_flips: bool = False
    in_memory: bool = False
    manual_files: tuple[str, ...] = ()

    @property
    def num_dims(self) -> int:
        """D = H * W * C, the number of dimensions of one image."""
        h, w, c = self.image_shape
        return h * w * c


_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

_INFOS = {
    info.name: info
    for info in (
        DatasetInfo("mnist", (28, 28, 1), 256, 60_000, 10_000, "train", "test",
                    "mnist", in_memory=True, manual_files=_IDX_FILES),
        DatasetInfo("fashion_mnist", (28, 28, 1), 256, 60_000, 10_000, "train", "test",
                    "fashion_mnist", in_memory=True, manual_files=_IDX_FILES),
        DatasetInfo("cifar10", (32, 32, 3), 256, 50_000, 10_000, "train", "test",
                    "cifar10", random_flips=True, in_memory=True,
                    manual_files=("cifar-10-binary.tar.gz",)),
        DatasetInfo("celeb_a", (64, 64, 3), 256, 162_770, 19_962, "train", "test",
                    "celeb_a", random_flips=True,
                    manual_files=("img_align_celeba.zip", "list_eval_partition.txt",
                                  "list_attr_celeba.txt",
                                  "list_landmarks_align_celeba.txt",
                                  "identity_CelebA.txt")),
        DatasetInfo("imagenet32", (32, 32, 3), 256, 1_281_167, 50_000, "train",
                    "validation", "imagenet_resized/32x32",
                    manual_files=("Imagenet32_train_npz.zip", "Imagenet32_val_npz.zip")),
        DatasetInfo("imagenet64", (64, 64, 3), 256, 1_281_167, 50_000, "train",
                    "validation", "imagenet_resized/64x64",
                    manual_files=("Imagenet64_train_part1_npz.zip",
                                  "Imagenet64_train_part2_npz.zip",
                                  "Imagenet64_val_npz.zip")),
        DatasetInfo("lsun_bedroom", (64, 64, 3), 256, 3_033_042, 300, "train",
                    "validation", "lsun/bedroom", random_flips=True,
                    manual_files=("bedroom_train_lmdb.zip", "bedroom_val_lmdb.zip")),
        DatasetInfo("digits", (8, 8, 1), 17, 1_500, 297, "train", "test", None,
                    in_memory=True),
    )
}

DATASET_NAMES = tuple(_INFOS)

# CelebA (218x178 aligned faces): the paper's central 148x148 crop.
_CELEBA_CROP = 148
# LSUN: smallest side resized to this, then 64x64 crops.
_LSUN_SMALL_SIDE = 96
# Shuffle buffer for the datasets that are not held in memory.
_STREAM_SHUFFLE_BUFFER = 10_000
# Seed streams, so noise, flips and crops never share random numbers.
_EVAL_NOISE, _TRAIN_NOISE, _TRAIN_FLIP, _TRAIN_CROP = 0, 1, 2, 3
# Digits: a fixed permutation (legacy RandomState stream, stable across numpy versions).
_DIGITS_SPLIT_SEED = 0


def get_dataset_info(name: str) -> DatasetInfo:
    """Returns the :class:`DatasetInfo` of ``name``; ValueError for unknown names."""
    try:
        return _INFOS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}"
        ) from None


# --------------------------------------------------------------------------- sources


def _digits_images(split: str) -> np.ndarray:
    """scikit-learn's bundled 8x8 digits as uint8 [N, 8, 8, 1], values 0..16."""
    from sklearn.datasets import load_digits  # local: sklearn is slow to import

    info = _INFOS["digits"]
    images = load_digits().images.astype(np.uint8)[..., None]  # 1797 x 8 x 8 x 1
    order = np.random.RandomState(_DIGITS_SPLIT_SEED).permutation(len(images))
    if split == "train":
        return images[order[: info.num_train]]
    if split == "test":
        return images[order[info.num_train:]]
    raise ValueError(f"digits has the splits 'train' and 'test', not {split!r}")


def _download_urls(info: DatasetInfo) -> list[str]:
    """The tfds download URLs of ``info``'s files (from tfds's registered checksums)."""
    import tensorflow_datasets as tfds

    builder_name = info.tfds_name.split("/")[0]
    url_infos = tfds.builder_cls(builder_name).url_infos or {}
    wanted = set(info.manual_files)
    return sorted(url for url, ui in url_infos.items() if ui.filename in wanted)


def _network_available(url: str, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host can be opened within ``timeout`` s.

    Name resolution has no timeout of its own, so the whole check runs in a thread that
    is given up after ``timeout + 1`` seconds. Tests replace this function.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)

    def connect() -> bool:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout + 1.0)
    except concurrent.futures.TimeoutError:
        return False
    finally:
        pool.shutdown(wait=False)


def _manual_dir_hint(info: DatasetInfo) -> str:
    files = ", ".join(info.manual_files)
    return (
        f"Download the official files on a machine with internet and pass their folder "
        f"with --manual_dir (make_dataset(..., manual_dir=...)); for {info.name} tfds "
        f"expects these file names in it: {files}. The dataset is then prepared once "
        f"into --data_dir and reused from there."
    )


def prepare_dataset(name: str, data_dir: str | None = None,
                    manual_dir: str | None = None):
    """Makes sure ``name`` is prepared in ``data_dir`` and returns its tfds builder.

    Order: data already prepared in ``data_dir`` -> reuse it; ``manual_dir`` given ->
    check that the expected files are there and prepare from them with no network;
    otherwise check that the download host answers (a few seconds) and let tfds
    download. Returns ``None`` for ``digits``, which needs nothing.

    Raises:
      ValueError: unknown ``name``.
      DataUnavailableError: files missing from ``manual_dir``, or no network and no
        prepared data.
    """
    info = get_dataset_info(name)
    if info.tfds_name is None:
        return None
    import tensorflow_datasets as tfds

    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    if manual_dir is not None:
        manual_dir = os.path.expanduser(os.fspath(manual_dir))
        missing = [f for f in info.manual_files
                   if not os.path.isfile(os.path.join(manual_dir, f))]
        if missing:
            raise DataUnavailableError(
                f"--manual_dir {manual_dir!r} lacks the files tfds needs to prepare "
                f"{info.name}: missing {', '.join(missing)} (expected all of: "
                f"{', '.join(info.manual_files)}).")
        _check_prepare_prerequisites(info)
        config = tfds.download.DownloadConfig(manual_dir=manual_dir,
                                              try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
        return builder
    urls = _download_urls(info)
    if not urls or not _network_available(urls[0]):
        host = urllib.parse.urlsplit(urls[0]).hostname if urls else "the download host"
        raise DataUnavailableError(
            f"Dataset {info.name!r} is not prepared in data_dir "
            f"{builder.data_dir_root!s} and {host} cannot be reached (no network?). "
            + _manual_dir_hint(info))
    _check_prepare_prerequisites(info)
    builder.download_and_prepare()
    return builder


def _check_prepare_prerequisites(info: DatasetInfo) -> None:
    """Fails before any download if tfds could not prepare ``info`` here.

    tfds prepares LSUN from LMDB files through `tensorflow-io` (not a dependency of
    this package: its releases lag TensorFlow's); without it the 43 GB download would
    be wasted. Tests that mock tfds replace this function.
    """
    if info.name != "lsun_bedroom":
        return
    try:
        import tensorflow_io  # noqa: F401  # pylint: disable=unused-import,import-outside-toplevel
    except Exception as e:  # ImportError, or a binary built for another TF
        raise DataUnavailableError(
            "Preparing lsun_bedroom with tfds reads LMDB files through the "
            f"`tensorflow-io` package, which cannot be imported here ({e}). Prepare it "
            "on a machine where tensorflow-io matches TensorFlow and pass that "
            "--data_dir.") from e


# ---------------------------------------------------------------- deterministic steps


def _to_pixels(image: tf.Tensor, num_levels: int) -> tf.Tensor:
    """Rounds and clips a resized image back to integer pixels 0..K-1 (uint8)."""
    image = tf.clip_by_value(tf.round(image), 0.0, float(num_levels - 1))
    return tf.cast(image, tf.uint8)


def _resize(image: tf.Tensor, size, num_levels: int) -> tf.Tensor:
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear",
                            antialias=True)
    return _to_pixels(image, num_levels)


def _celeba_crop_resize(image: tf.Tensor) -> tf.Tensor:
    """218x178 aligned CelebA -> central 148x148 crop -> 64x64 (the paper's set)."""
    image = tf.image.resize_with_crop_or_pad(image, _CELEBA_CROP, _CELEBA_CROP)
    return _resize(image, (64, 64), 256)


def _lsun_resize(image: tf.Tensor) -> tf.Tensor:
    """Resizes so that the smallest side is 96 pixels, keeping the aspect ratio."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    size = tf.cast(tf.round(hw * (_LSUN_SMALL_SIDE / tf.reduce_min(hw))), tf.int32)
    size = tf.maximum(size, _LSUN_SMALL_SIDE)
    return _resize(image, size, 256)


def _center_crop(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    shape = tf.shape(image)
    top = (shape[0] - height) // 2
    left = (shape[1] - width) // 2
    return tf.image.crop_to_bounding_box(image, top, left, height, width)


def _tfds_source(info: DatasetInfo, split: str, training: bool, data_dir, manual_dir,
                 seed: int) -> tf.data.Dataset:
    """Decoded uint8 images (unbatched) of a tfds dataset, labels dropped."""
    import tensorflow_datasets as tfds

    builder = prepare_dataset(info.name, data_dir=data_dir, manual_dir=manual_dir)
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    ds = builder.as_dataset(split=split, shuffle_files=training,
                            read_config=read_config)
    return ds.map(lambda example: example["image"], num_parallel_calls=AUTOTUNE)


def _source(info: DatasetInfo, split: str, training: bool, data_dir, manual_dir,
            seed: int) -> tf.data.Dataset:
    """uint8 images after the deterministic preprocessing; LSUN stays uncropped."""
    tfds_split = {"train": info.train_split, "test": info.test_split}.get(split, split)
    if info.tfds_name is None:
        return tf.data.Dataset.from_tensor_slices(_digits_images(tfds_split))
    ds = _tfds_source(info, tfds_split, training, data_dir, manual_dir, seed)
    if info.name == "celeb_a":
        ds = ds.map(_celeba_crop_resize, num_parallel_calls=AUTOTUNE)
    elif info.name == "lsun_bedroom":
        ds = ds.map(_lsun_resize, num_parallel_calls=AUTOTUNE)
    return ds


# --------------------------------------------------------------------- random steps


def _element_seed(seed: int, stream: int, *indices) -> tf.Tensor:
    """A stateless-RNG seed (shape [2]) for ``(seed, stream, *indices)``."""
    key = tf.constant([seed, stream], dtype=tf.int64)
    for index in indices:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))
    return key


def _dequantize(image: tf.Tensor, seed: tf.Tensor, num_levels: int) -> tf.Tensor:
    """x + u, u ~ U[0, 1), with floor(x + u) == x exactly (so always in [0, K)).

    In float32, x + u rounds up to x + 1 when u is within half an ulp of x + 1 of 1
    (for x = 255: u > 1 - 2**-17, a few times per MNIST epoch); such values are moved
    to the largest float32 below x + 1.
    """
    del num_levels  # [0, K) follows from floor(x + u) == x <= K - 1
    x = tf.cast(image, tf.float32)
    return add_noise(x, tf.random.stateless_uniform(tf.shape(x), seed=seed,
                                                     dtype=tf.float32))


def add_noise(pixels: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """``pixels + noise`` for integer-valued float32 pixels and noise in [0, 1), kept
    below ``pixels + 1`` in float32, so that ``floor`` gives back the pixels."""
    return tf.minimum(pixels + noise, tf.math.nextafter(pixels + 1.0, pixels))


def _random_flip_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips each image of a [B, H, W, C] batch left-right with probability 1/2."""
    flip = tf.random.stateless_uniform(tf.shape(images)[:1], seed=seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


# ------------------------------------------------------------------------ public API


def _check_args(split: str, batch_size: int) -> None:
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be 'train', 'test' or a tfds split, not {split!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")


def make_uint8_dataset(name: str, split: str = "train", data_dir: str | None = None,
                       manual_dir: str | None = None) -> tf.data.Dataset:
    """The integer pixels of a split, unbatched uint8 ``[H, W, C]``, in file order.

    This is the evaluation view before noise: CelebA cropped and resized, LSUN resized
    and centre-cropped. Useful for statistics on the raw pixels.
    """
    info = get_dataset_info(name)
    _check_args(split, 1)
    ds = _source(info, split, False, data_dir, manual_dir, 0)
    if info.name == "lsun_bedroom":
        ds = ds.map(lambda im: _center_crop(im, 64, 64), num_parallel_calls=AUTOTUNE)
    return ds


def make_dataset(name: str, split: str = "train", batch_size: int = 64,
                 training: bool = True, data_dir: str | None = None,
                 manual_dir: str | None = None, seed: int = 0,
                 input_context: tf.distribute.InputContext | None = None,
                 repeat: int | None = None) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of float32 ``[B, H, W, C]`` images in ``[0, K)``.

    Args:
      name: one of ``DATASET_NAMES``.
      split: ``"train"`` or ``"test"`` (mapped to ``DatasetInfo.train_split`` /
        ``test_split``), or any other tfds split string, passed through as it is.
      batch_size: the global batch size; with ``input_context`` each pipeline batches
        ``input_context.get_per_replica_batch_size(batch_size)`` images.
      training: training pipeline (shuffle, flips/crops where the paper uses them,
        fresh noise every epoch, ``drop_remainder``, repeats forever by default) or
        evaluation pipeline (file order, no flips, centre crops, every image kept, noise
        of image ``i`` seeded by ``(seed, i)``, one pass by default).
      data_dir: tfds data directory (tfds's default when ``None``).
      manual_dir: folder with the official raw files, for machines without internet.
      seed: seed of every random choice (shuffle order, noise, flips, crops).
      input_context: a ``tf.distribute.InputContext``: shard by input pipeline and
        batch per replica (for ``strategy.distribute_datasets_from_function``).
      repeat: number of passes; ``None`` means forever when training and once when
        evaluating.

    Raises:
      ValueError: unknown name, bad split or batch size.
      DataUnavailableError: the data is not prepared and cannot be obtained.
    """
    info = get_dataset_info(name)
    _check_args(split, batch_size)
    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if repeat is None:
        repeat = -1 if training else 1
    # Sharded by element so every pipeline reads a disjoint part with the same file
    # order; tfds file shuffling uses the same seed in every pipeline.
    ds = _source(info, split, training, data_dir, manual_dir, seed)

    if not training:
        ds = ds.enumerate()  # global image index, before sharding
        if num_pipelines > 1:
            ds = ds.shard(num_pipelines, pipeline_id)
        if info.in_memory:
            ds = ds.cache()
        crop = info.name == "lsun_bedroom"

        def evaluate(index, image):
            if crop:
                image = _center_crop(image, 64, 64)
            return _dequantize(image, _element_seed(seed, _EVAL_NOISE, index),
                               info.num_levels)

        ds = ds.map(evaluate, num_parallel_calls=AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=False)
        if repeat != 1:
            ds = ds.repeat(repeat)
        return ds.prefetch(AUTOTUNE)

    if num_pipelines > 1:
        ds = ds.shard(num_pipelines, pipeline_id)
    if info.in_memory:
        ds = ds.cache()
        buffer = info.num_train
    else:
        buffer = _STREAM_SHUFFLE_BUFFER
    ds = ds.shuffle(buffer, seed=seed + 7919 * pipeline_id, reshuffle_each_iteration=True)
    ds = ds.repeat(repeat)
    if info.name == "lsun_bedroom":  # random 64x64 crops, one seed per image drawn
        def crop(index, image):
            image_seed = _element_seed(seed, _TRAIN_CROP, pipeline_id, index)
            return tf.image.stateless_random_crop(image, (64, 64, 3), seed=image_seed)

        ds = ds.enumerate().map(crop, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    flips = info.random_flips

    def augment(step, images):  # vectorised over the batch: cheap per image
        if flips:
            images = _random_flip_batch(
                images, _element_seed(seed, _TRAIN_FLIP, pipeline_id, step))
        return _dequantize(images, _element_seed(seed, _TRAIN_NOISE, pipeline_id, step),
                           info.num_levels)

    ds = ds.enumerate().map(augment, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def make_distributed_dataset(strategy: tf.distribute.Strategy, name: str,
                             split: str = "train", global_batch_size: int = 64,
                             training: bool = True, **kwargs):
    """``make_dataset`` per input pipeline through
    ``strategy.distribute_datasets_from_function``; each replica gets
    ``global_batch_size / num_replicas`` images per step. ``kwargs`` are
    ``make_dataset``'s (``data_dir``, ``manual_dir``, ``seed``, ``repeat``).

    The data is prepared once here, before the per-pipeline functions run.
    """
    if "input_context" in kwargs or "batch_size" in kwargs:
        raise TypeError("make_distributed_dataset sets batch_size and input_context")
    get_dataset_info(name)
    prepare_dataset(name, data_dir=kwargs.get("data_dir"),
                    manual_dir=kwargs.get("manual_dir"))

    def dataset_fn(input_context):
        return make_dataset(name, split, batch_size=global_batch_size,
                            training=training, input_context=input_context, **kwargs)

    return strategy.distribute_datasets_from_function(dataset_fn)
