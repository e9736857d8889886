"""Trains RealNVP on an image dataset (the app is `realnvp_tf.apps.train`).

  python train.py --dataset=mnist --flagfile=configs/mnist.cfg --model_dir=runs/mnist
"""

from realnvp_tf.apps import train

if __name__ == "__main__":
  train.run()
