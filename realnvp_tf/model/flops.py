"""Convolution FLOPs of a RealNVP flow: counted from its layers and from its graph.

Convolutions are nearly all of the flow's arithmetic. A training step costs about 3x
the forward pass (forward, input gradients, filter gradients).
"""

import tensorflow as tf


def conv_flops(conv, height, width):
  """2 * H * W * k * k * Cin * Cout of one WeightNormConv2D at H x W (per image)."""
  k_h, k_w, c_in, c_out = (int(d) for d in conv.direction.shape)
  return 2 * height * width * k_h * k_w * c_in * c_out


def model_conv_shapes(flow):
  """{(H, W, kernel height, kernel width, Cin, Cout): count} of the s/t nets' convs."""
  shapes = {}
  for coupling in flow.bijector.couplings:
    height, width = (int(d) for d in coupling.image_shape[:2])
    for conv in coupling.net.convs:
      key = (height, width) + tuple(int(d) for d in conv.direction.shape)
      shapes[key] = shapes.get(key, 0) + 1
  return shapes


def forward_flops(flow):
  """Conv FLOPs per image of one pass (every coupling's network once), at the
  resolution each runs (checkerboard couplings at full resolution, on the masked image
  and the mask). Returns (total, {mask type: flops}, number of couplings)."""
  total, by_mask = 0, {}
  couplings = flow.bijector.couplings
  for coupling in couplings:
    height, width = (int(d) for d in coupling.image_shape[:2])
    flops = sum(conv_flops(conv, height, width) for conv in coupling.net.convs)
    total += flops
    by_mask[coupling.mask_type] = by_mask.get(coupling.mask_type, 0) + flops
  return total, by_mask, len(couplings)


def graph_forward_flops(flow):
  """FLOPs per image of the traced `log_prob` graph, from TF's per-op statistics.

  A check of `forward_flops` that follows whatever the code runs: the Conv2D ops of
  the graph traced at batch 1, and every op with registered statistics. Returns
  (conv flops, all flops).
  """
  from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top

  shape = (1,) + tuple(flow.event_shape)
  if flow.bijector.config.conditional:  # class 0: every class costs the same
    def log_prob(x):
      return flow.log_prob(x, bijector_kwargs={"labels": [0]})
  else:
    log_prob = flow.log_prob
  graph = tf.function(log_prob).get_concrete_function(
      tf.TensorSpec(shape, tf.float32)).graph
  conv_total = all_total = 0
  for op in graph.get_operations():
    try:
      value = ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
    except (ValueError, KeyError):
      continue
    all_total += value
    if op.type.startswith("Conv"):
      conv_total += value
  return conv_total, all_total
