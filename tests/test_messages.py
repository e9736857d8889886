"""Library errors name the library's arguments; the programs print them with their
flags (`apps.messages`)."""

import ast
import os
import subprocess
import sys

import pytest

from realnvp_tf import data
from realnvp_tf.apps import messages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "realnvp_tf")


def _library_strings():
  """(path:line, text) of every string literal outside apps/ that is not a docstring."""
  found = []
  for root, _, names in os.walk(PACKAGE):
    if os.path.join(PACKAGE, "apps") in root:
      continue
    for name in (n for n in names if n.endswith(".py")):
      path = os.path.join(root, name)
      tree = ast.parse(open(path).read())
      docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                    and node.body and isinstance(node.body[0], ast.Expr)}
      found += [(f"{os.path.relpath(path, REPO)}:{node.lineno}", node.value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings]
  return found


def test_no_library_message_names_a_command_line_flag():
  strings = _library_strings()
  assert any("image_dir=" in text for _, text in strings)  # the scan sees messages
  flagged = [f"{where}: {text!r}" for where, text in strings
             if any(f"--{name}" in text for name in ("image_dir", "model_dir",
                                                      "dataset", "manual_dir",
                                                      "learning_rate", "images"))]
  assert not flagged, "\n".join(flagged)


def test_as_flags_writes_arguments_as_flags_and_leaves_values_alone():
  names = {"image_dir", "batch_size", "dataset", "images", "select"}
  assert messages.as_flags(
      "image_dir=/a/image_dir: 3 images, fewer than one batch; lower batch_size.",
      names) == ("--image_dir=/a/image_dir: 3 images, fewer than one batch; lower "
                 "--batch_size.")
  # A bare English word stays a word; with `=` it is the argument.
  assert messages.as_flags("the dataset has no labels; pass dataset=NAME.", names) == (
      "the dataset has no labels; pass --dataset=NAME.")
  # Quoted values, dotted Python names and longer words are not arguments.
  assert messages.as_flags("got 'image_dir', data.image_dir, image_dirs", names) == (
      "got 'image_dir', data.image_dir, image_dirs")
  assert messages.as_flags("select=best", set()) == "select=best"


def test_a_library_error_names_the_argument_and_the_program_the_flag(tmp_path):
  missing = str(tmp_path / "missing")
  with pytest.raises(ValueError) as raised:
    data.resolve(data.DataSpec(data.IMAGE_DIR, image_dir=missing, image_size="8"))
  assert str(raised.value) == f"image_dir={missing}: no such directory."
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "train.py"), f"--image_dir={missing}",
       "--image_size=8", f"--model_dir={tmp_path / 'run'}"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  lines = [line for line in result.stderr.splitlines() if "error" in line]
  assert lines == [f"train.py: error: --image_dir={missing}: no such directory."]
