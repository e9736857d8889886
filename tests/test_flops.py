"""FLOP accounting against the traced graph and a count by hand."""

import realnvp_tf
from realnvp_tf.model import flops


def test_analytic_conv_flops_match_the_graph_and_a_hand_count():
  config = realnvp_tf.RealNVPConfig(image_shape=(8, 8, 1), num_levels=17, num_scales=2,
                                    num_res_blocks=1, num_filters=4)
  flow = realnvp_tf.build_realnvp(config)
  total, by_mask, couplings = flops.forward_flops(flow)
  assert couplings == 3 + 3 + 4
  # By hand, per image: 2 * H * W * 9 * Cin * Cout per conv; each network is
  # conv_in, one block (two convs), conv_out to 2 * out channels.
  def network(height, width, c_in, filters, c_out):
    convs = [(c_in, filters), (filters, filters), (filters, filters),
             (filters, 2 * c_out)]
    return sum(2 * height * width * 9 * a * b for a, b in convs)
  checkerboard = 3 * network(8, 8, 2, 4, 1) + 4 * network(4, 4, 3, 8, 2)
  channel = 3 * network(4, 4, 2, 8, 2)
  assert by_mask == {"CheckerboardMask": checkerboard, "ChannelMask": channel}
  assert total == checkerboard + channel
  graph_convs, graph_all = flops.graph_forward_flops(flow)
  assert graph_convs == total
  assert graph_all >= graph_convs
  shapes = flops.model_conv_shapes(flow)
  assert sum(shapes.values()) == 10 * 4
  assert shapes[(8, 8, 3, 3, 2, 4)] == 3  # the first scale's conv_in
