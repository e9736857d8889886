"""Evaluates a trained RealNVP (the app is `realnvp_tf.apps.evaluate`).

  python eval.py --saved_model=runs/mnist/export --output=runs/mnist/eval.json
"""

from realnvp_tf.apps import evaluate

if __name__ == "__main__":
  evaluate.run()
