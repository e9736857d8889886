"""Every shipped config runs: train.py reads each file as it is, with only its size
flags shrunk, and trains it for 2 steps to its checkpoint and metrics
(tensorflow-datasets sets mocked: the point is that every flag the file names still
reaches the run)."""

import glob
import json
import os
import subprocess
import sys

import pytest

import trainer_fixtures as fx
from trainer_fixtures import REPO

CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.cfg")))
GROUPS = 4  # one process a group, so the two test workers share the runs
# What the test shrinks, and only this: the flow (one scale: tracing a 4-scale flow's
# training step took most of a 64x64 config's 25 s), the networks, the batch, the
# steps and the evaluations; and it leaves out the export and the batch-norm
# re-estimation (other tests make both; here they would add a third to the time of
# each run). The shrunk values must reach the run too.
SHRINK = ["--num_scales=1", "--num_res_blocks=1", "--num_filters=4", "--batch_size=4",
          "--train_steps=2", "--eval_images=8", "--eval_batch_size=8",
          "--batch_norm_recalibration_batches=0", "--noexport"]


def _as_run_saw(settings, name):
  """The value of flag `name` as config.json records it."""
  if name == "mixed_precision":
    return settings["model"]["compute_dtype"]
  for part in ("train", "model"):
    if name in settings[part]:
      return settings[part][name]
  raise AssertionError(f"--{name} is in no field of config.json: a renamed flag?")


def test_the_configs_are_split_into_groups():
  assert len(CONFIGS) >= 10
  assert sorted(sum((CONFIGS[i::GROUPS] for i in range(GROUPS)), [])) == CONFIGS


@pytest.mark.long
@pytest.mark.timeout(900)
@pytest.mark.parametrize("group", range(GROUPS))
def test_each_shipped_config_trains_at_a_shrunken_size(tmp_path, group):
  configs = CONFIGS[group::GROUPS]
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "config_runs_main.py"),
       str(tmp_path), "12", *configs, *SHRINK],
      env=fx.env(), capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  shrunk = dict(arg[2:].split("=") for arg in SHRINK if "=" in arg)
  for path in configs:
    name = os.path.splitext(os.path.basename(path))[0]
    assert f"ran {name}" in result.stdout.splitlines(), result.stdout
    run = tmp_path / name
    settings = json.loads((run / "config.json").read_text())
    for flag, value in dict(fx.flagfile_values(path), **shrunk).items():
      saw = _as_run_saw(settings, flag)
      assert str(saw).lower() == value.lower() or (
          isinstance(saw, (int, float)) and not isinstance(saw, bool)
          and float(saw) == float(value)), (name, flag, value, saw)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["bits_per_dim"] > 0, (name, metrics)
    assert list((run / "checkpoints").glob("ckpt-2.index")), name
