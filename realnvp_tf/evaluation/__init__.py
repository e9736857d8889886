"""Evaluating a trained model: test NLL in bits/dim (`likelihood`), a
class-conditional model's generative classifier (`classifier`), figures
(`figures`: sample grids, the latent manifold), and which images a model is
evaluated on (`model_images`).

Imports nothing of realnvp_tf.ood (see docs/architecture.md): the test NLL needs no
scoring stack.
"""
