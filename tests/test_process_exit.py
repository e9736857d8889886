"""The programs' exit: main's status, output flushed and `atexit` handlers run, the
interpreter's teardown skipped; an ordinary exit where the interpreter must live on."""

import os
import subprocess
import sys

import pytest

from realnvp_tf.apps import process

import trainer_fixtures as fx

# A program run as the apps are (`cli.run_app`). Its stdout is a pipe without
# PYTHONUNBUFFERED, so the unterminated line is still in Python's buffer at the
# exit; the atexit handler leaves a file; the module-level object's __del__ runs only
# in the interpreter's teardown.
_PROGRAM = """
import atexit, sys
from realnvp_tf.apps import cli

out = sys.argv[1]

class Teardown:
  def __del__(self, open=open, path=out + ".teardown"):  # bound while they exist
    open(path, "w").close()

KEPT = Teardown()
atexit.register(lambda: open(out + ".atexit", "w").close())

def main(argv):
  sys.stdout.write("before the exit")
  if sys.argv[2] == "message":
    sys.exit("a one-line message")
  return int(sys.argv[2])

cli.run_app(main, "__main__", argv=sys.argv[:1])
print("after run_app")
"""


@pytest.mark.parametrize("status", ["0", "3", "message"])
def test_an_app_exits_with_mains_status_flushed_without_teardown(tmp_path, status):
  out = tmp_path / "marker"
  env = fx.env()
  env.pop("PYTHONUNBUFFERED", None)
  result = subprocess.run([sys.executable, "-c", _PROGRAM, str(out), status], env=env,
                          capture_output=True, text=True, timeout=300)
  expected = 1 if status == "message" else int(status)
  assert result.returncode == expected, result.stderr[-2000:]
  assert result.stdout == "before the exit", result.stdout
  if status == "message":
    assert result.stderr.strip().splitlines()[-1] == "a one-line message"
  assert os.path.exists(f"{out}.atexit")
  assert not os.path.exists(f"{out}.teardown")


def test_the_same_program_tears_down_when_it_exits_as_usual(tmp_path):
  # The check above can fail: an ordinary exit runs the __del__ it looks for.
  out = tmp_path / "marker"
  program = _PROGRAM.replace("cli.run_app(main, \"__main__\", argv=sys.argv[:1])",
                             "sys.exit(main(sys.argv))")
  result = subprocess.run([sys.executable, "-c", program, str(out), "0"],
                          env=fx.env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.path.exists(f"{out}.atexit") and os.path.exists(f"{out}.teardown")


@pytest.mark.parametrize("setting", ["ps1", "TF_CONFIG"])
def test_an_interactive_or_multi_worker_process_exits_as_usual(monkeypatch, setting):
  if setting == "ps1":
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
  else:
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
  with pytest.raises(SystemExit) as raised:
    process.exit_without_teardown(4)
  assert raised.value.code == 4
