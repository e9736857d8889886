"""Out-of-distribution detection with a trained flow: the scores (`scores`, computed
in TensorFlow, also inside the SavedModel), detection metrics (`metrics`: AUROC,
AUPR, FPR95), rows of scores per image (`scoring`, score.py) and the evaluation of
one set against another (`evaluation`, eval.py --ood_dataset / --ood_images)."""
