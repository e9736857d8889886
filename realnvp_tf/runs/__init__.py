"""A training run on disk and the trained model it leaves: the run directory
(`directory`: layout, lock, config.json, metrics.json), its checkpoints
(`checkpoints`) and best weights (`best`), the SavedModel (`export`), and loading
either for inference (`loading`, `realnvp_tf.load`).

Needs no trainer: nothing here imports realnvp_tf.training (see
docs/architecture.md).
"""

from realnvp_tf.runs.loading import LoadedModel
from realnvp_tf.runs.loading import load

__all__ = ["LoadedModel", "load"]
