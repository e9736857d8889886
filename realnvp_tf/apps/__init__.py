"""The programs (absl apps) and what only programs do.

- `train`, `evaluate`, `score`: each defines its flags at import and a `run()` entry
  point, which the top-level `train.py` / `eval.py` / `score.py` and the console
  scripts `realnvp-train` / `realnvp-eval` / `realnvp-score` call;
- `cli`: the flags they share, the configs built from them, the bundled flagfiles
  (`configs/`, `--config=NAME`);
- `process`: process-wide settings (TensorFlow's start-up lines held back, its INFO
  lines filtered, one malloc arena), which the library never makes on import.
"""
