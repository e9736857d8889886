"""Training a flow: `TrainConfig`, and the `Trainer` that puts together the state
(`state`), the distributed step (`step`, with `adam`), the loop (`controller`) and
what runs between steps (`actions`), model selection on the validation split
(`selection`), batch-norm statistics for the final weights
(`batch_norm_estimation`), the strategy (`strategies`) and resuming (`resume`).

    from realnvp_tf import training
    trainer = training.Trainer(model_config, training.TrainConfig(dataset="digits"),
                               model_dir="runs/digits")
    metrics = trainer.fit()
"""

from realnvp_tf.training.actions import NonFiniteLossError
from realnvp_tf.training.config import TrainConfig
from realnvp_tf.training.trainer import Trainer
from realnvp_tf.training.trainer import resolve_data

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "resolve_data"]
