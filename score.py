"""Scores images with a trained RealNVP (the app is `realnvp_tf.apps.score`).

  python score.py --saved_model=runs/fashion/export --images=photos/ --output=scores.csv
"""

from realnvp_tf.apps import score

if __name__ == "__main__":
  score.run()
