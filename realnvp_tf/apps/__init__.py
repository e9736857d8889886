"""The command-line programs (absl apps): `train` and `evaluate`.

Each module defines its flags at import and a `run()` entry point; the top-level
`train.py` / `eval.py` and the console scripts `realnvp-train` / `realnvp-eval` call
it.
"""
