"""Input-pipeline throughput: training images/s for MNIST- and CIFAR-10-shaped data.

Runs ``realnvp_tf.data.make_dataset(..., training=True, batch_size=64)`` over
``tfds.testing.mock_data`` (random images with the real feature specs, no files, no
network), so the figure covers everything the training pipeline does per image: cache
read, shuffle, batching, flips (CIFAR-10) and dequantization noise. The warm-up (mock
generation, cache fill, first shuffle-buffer fill) is excluded; the figure is the median
over repeats, each longer than one epoch, so the per-epoch shuffle refill is included.

For comparison it also times a training step of a RealNVP flow (log_prob, gradient) on
the same batch size, when ``realnvp_tf.build_realnvp`` is available (``--flow_step``,
on by default). That flow is the default config (4 residual blocks, 32 filters):
smaller than the paper's CIFAR-10 model, so the ratio it gives is a conservative one.

Prints one JSON line. Usage:  python bench/data_pipeline.py [--repeats 5] [--steps 200]
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from realnvp_tf import data  # noqa: E402

BATCH_SIZE = 64
NUM_EXAMPLES = 10_000  # mock examples: about 156 batches per epoch


def pipeline_images_per_s(name, repeats, steps):
    """Median images/s of the training pipeline over mock data."""
    # Under mock_data tfds's download_and_prepare is a no-op: nothing is fetched.
    data._network_available = lambda url, timeout=0: True
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, max_value=256):
        ds = data.make_dataset(name, "train", batch_size=BATCH_SIZE, training=True)
        it = iter(ds)
        for _ in range(NUM_EXAMPLES // BATCH_SIZE + 20):  # warm-up: cache + shuffle
            next(it)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                batch = next(it)
            rates.append(steps * BATCH_SIZE / (time.perf_counter() - start))
        assert batch.shape == (BATCH_SIZE, *data.get_dataset_info(name).image_shape)
    return statistics.median(rates), rates


def flow_step_images_per_s(name, steps=3):
    """images/s of one RealNVP training step (forward + gradient), default config."""
    import realnvp_tf

    info = data.get_dataset_info(name)
    config = realnvp_tf.RealNVPConfig(image_shape=info.image_shape,
                                      num_levels=info.num_levels)
    flow = realnvp_tf.build_realnvp(config)
    x = tf.random.uniform((BATCH_SIZE, *info.image_shape), 0.0, info.num_levels - 1.0)
    flow.log_prob(x)  # creates the variables

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(realnvp_tf.bits_per_dim(
                flow.log_prob(images, bijector_kwargs={"training": True}),
                info.image_shape))
        return loss, tape.gradient(loss, flow.trainable_variables)

    step(x)  # trace + warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, grads = step(x)
        float(loss)
        times.append(time.perf_counter() - start)
    return BATCH_SIZE / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="batches per repeat")
    parser.add_argument("--flow_step", dest="flow_step", action="store_true",
                        default=True)
    parser.add_argument("--no_flow_step", dest="flow_step", action="store_false")
    args = parser.parse_args()

    result = {"benchmark": "data_pipeline", "batch_size": BATCH_SIZE,
              "mock_examples": NUM_EXAMPLES, "repeats": args.repeats,
              "batches_per_repeat": args.steps, "cpus": os.cpu_count()}
    for label, name in [("mnist", "mnist"), ("cifar10", "cifar10")]:
        median, rates = pipeline_images_per_s(name, args.repeats, args.steps)
        result[f"{label}_pipeline_images_per_s"] = round(median)
        result[f"{label}_pipeline_images_per_s_all"] = [round(r) for r in rates]
        if args.flow_step:
            try:
                step_rate = flow_step_images_per_s(name)
            except Exception as e:  # the flow core is developed separately
                result[f"{label}_flow_step_error"] = f"{type(e).__name__}: {e}"[:200]
            else:
                result[f"{label}_flow_step_images_per_s"] = round(step_rate, 1)
                result[f"{label}_pipeline_over_step"] = round(median / step_rate, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
