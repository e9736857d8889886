"""The distribution strategy of a run and what follows from it (chief, batch split)."""

import json
import os

import tensorflow as tf


def make_strategy():
  """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else MirroredStrategy
  over the local GPUs (the CPU when there are none)."""
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  return tf.distribute.MirroredStrategy([d.name for d in gpus] if gpus else ["/cpu:0"])


def is_chief(strategy):
  """Whether this process writes the run directory (the chief, or worker 0)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type is None or task_type == "chief" or (
      task_type == "worker" and task_id == 0)


def is_multi_worker(strategy):
  """Whether `strategy` spans several worker processes."""
  resolver = getattr(strategy, "cluster_resolver", None)
  return resolver is not None and sum(
      len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def check_batch_size(batch_size, strategy):
  """A one-line ValueError unless the global batch splits evenly over the replicas."""
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(
        f"batch_size {batch_size} is not divisible by the {replicas} replicas; use a "
        f"multiple of {replicas}.")
