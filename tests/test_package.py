"""The package as users get it: its import rules and graph, importing it, the README's
Python example, and `pip install .` with its console scripts and bundled configs."""

import ast
import json
import os
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from realnvp_tf import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "realnvp_tf")
RULES_DOC = os.path.join(REPO, "docs", "architecture.md")


def _modules():
  """{module name: path} of every module of realnvp_tf."""
  found = {}
  for root, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        parts = os.path.relpath(os.path.join(root, name), REPO)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        found[".".join(parts)] = os.path.join(root, name)
  return found


def _imports(path, modules):
  """The realnvp_tf modules `path` imports (at the top or inside functions)."""
  targets = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        submodule = f"{node.module}.{alias.name}"
        targets.add(submodule if submodule in modules else node.module)
  return {t for t in targets if t in modules}


def _graph():
  modules = _modules()
  return {name: _imports(path, modules) for name, path in modules.items()}


def import_rules(text):
  """{sub-package: allowed sub-packages} from the `import-rules` block of a document
  (docs/architecture.md writes them down once; this reads them from there)."""
  block = re.search(r"^```import-rules\n(.*?)^```", text, re.S | re.M)
  assert block, "no ```import-rules block"
  rules = {}
  for line in block.group(1).splitlines():
    line = line.split("#")[0].strip()
    if line:
      name, _, allowed = line.partition(":")
      rules[name.strip()] = set(allowed.split())
  return rules


def _subpackage(module):
  """"model" for realnvp_tf.model.flow; None for the package root."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None


def forbidden_imports(graph, rules):
  """The imports `rules` do not allow, as "module -> imported module" lines: into
  another sub-package not listed for the importer's, into the package root (the
  facade, which imports everything), or from a module outside every sub-package."""
  found = []
  for module, targets in sorted(graph.items()):
    source = _subpackage(module)
    if source is None:
      continue  # the root: a facade over model, training and runs
    for target in sorted(targets):
      wanted = _subpackage(target)
      if source not in rules or wanted is None or (
          wanted != source and wanted not in rules[source]):
        found.append(f"{module} -> {target}")
  return found


def test_imports_between_subpackages_follow_the_documented_rules():
  rules = import_rules(open(RULES_DOC).read())
  graph = _graph()
  subpackages = {_subpackage(m) for m in graph} - {None}
  assert subpackages == set(rules), "every sub-package, and only those, has a rule"
  assert not forbidden_imports(graph, rules), "\n".join(forbidden_imports(graph, rules))
  # The rules mean what they say: model and data import nothing else of the package,
  # test NLL evaluation nothing of OOD, loading and export no training code.
  assert rules["model"] == rules["data"] == set()
  assert "ood" not in rules["evaluation"] and "training" not in rules["runs"]


def test_the_import_rule_check_reports_what_it_should():
  rules = {"model": set(), "runs": {"model"}, "training": {"model", "runs"}}
  graph = {
      "realnvp_tf": {"realnvp_tf.training.trainer"},  # the facade: exempt
      "realnvp_tf.model.flow": {"realnvp_tf.model.config"},  # within a sub-package
      "realnvp_tf.runs.loading": {"realnvp_tf.model.flow",
                                  "realnvp_tf.training.trainer"},  # not allowed
      "realnvp_tf.training.trainer": {"realnvp_tf.runs", "realnvp_tf"},  # the root
      "realnvp_tf.ood.scores": set(),  # a sub-package without a rule
  }
  assert forbidden_imports(graph, rules) == [
      "realnvp_tf.runs.loading -> realnvp_tf.training.trainer",
      "realnvp_tf.training.trainer -> realnvp_tf"]
  graph["realnvp_tf.ood.scores"] = {"realnvp_tf.model.flow"}
  assert forbidden_imports(graph, rules)[0] == (
      "realnvp_tf.ood.scores -> realnvp_tf.model.flow")


def test_no_module_imports_one_that_imports_it_back():
  graph = _graph()
  assert "realnvp_tf.training.trainer" in graph and "realnvp_tf.data.pipeline" in graph
  # Depth-first search for a cycle, reporting the first one found.
  state = {}

  def visit(name, trail):
    state[name] = "open"
    for target in sorted(graph[name]):
      if state.get(target) == "open":
        cycle = trail[trail.index(target):] + [target]
        raise AssertionError("import cycle: " + " -> ".join(cycle))
      if target not in state:
        visit(target, trail + [target])
    state[name] = "done"

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])


# More than this many parameters is a config object's job.
MAX_PARAMETERS = 8


def _long_signatures(source, path):
  """"path:line name (n)" of every function of `source` with more than
  MAX_PARAMETERS parameters (self and cls aside)."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
      names = [a.arg for a in arguments if a.arg not in ("self", "cls")]
      if len(names) > MAX_PARAMETERS:
        found.append(f"{path}:{node.lineno} {node.name} ({len(names)})")
  return found


def test_no_function_takes_more_than_eight_parameters():
  paths = list(_modules().values()) + [
      os.path.join(REPO, folder, name) for folder in ("bench", ".")
      for name in os.listdir(os.path.join(REPO, folder)) if name.endswith(".py")]
  long = [entry for path in paths
          for entry in _long_signatures(open(path).read(), path)]
  assert not long, "functions with more than 8 parameters: " + "; ".join(long)
  # The check sees a long signature, keyword-only parameters included.
  assert _long_signatures("def f(self, a, b, c, d, e, f, g, *, h, i): pass", "x")
  assert not _long_signatures("def f(self, a, b, c, d, e, f, g, h): pass", "x")


def test_importing_the_package_changes_nothing_in_the_process():
  # Not stderr's file descriptor, not TensorFlow's log level; the public names load on
  # first use.
  code = ("import os, sys\n"
          "before = os.fstat(2).st_ino, os.environ.get('TF_CPP_MIN_LOG_LEVEL')\n"
          "import realnvp_tf\n"
          "assert 'tensorflow' not in sys.modules, 'import realnvp_tf imported TF'\n"
          "assert (os.fstat(2).st_ino, os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
          " == before\n"
          "config = realnvp_tf.RealNVPConfig(image_shape=(8, 8, 1), num_scales=2)\n"
          "assert (os.fstat(2).st_ino, os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
          " == before\n"
          "assert sorted(realnvp_tf.__all__) == sorted(n for n in realnvp_tf.__all__\n"
          "                                            if getattr(realnvp_tf, n))\n"
          "print('ok', realnvp_tf.training.Trainer.__name__)\n")
  env = dict(os.environ, PYTHONPATH=REPO)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "ok Trainer"


def _readme_python():
  text = open(os.path.join(REPO, "README.md")).read()
  blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
  assert len(blocks) == 1, "the README has one Python example"
  return blocks[0]


def test_the_readme_python_example_runs_as_written(tmp_path):
  # As a user would run it: a fresh process in a new directory.
  result = subprocess.run([sys.executable, "-c", _readme_python()], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  test_figure, samples = (float(v) for v in result.stdout.split())
  metrics = (tmp_path / "runs" / "readme" / "metrics.json").read_text()
  assert f'"bits_per_dim": {test_figure}' in metrics.replace("\n", "")
  assert 0.5 < test_figure < 4.1 and samples > 0  # log2(17) = 4.09: a uniform model


def _run(args, cwd, **kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("PYTHONPATH", None)
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=600, **kwargs)


def test_pip_install_gives_console_scripts_that_work_from_any_directory(tmp_path):
  # A fresh venv that sees the already-installed dependencies; the package itself is
  # built and installed from this checkout, offline.
  venv = tmp_path / "venv"
  made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
              cwd=tmp_path)
  assert made.returncode == 0, made.stderr[-2000:]
  bin_dir = venv / "bin"
  install = _run([str(bin_dir / "pip"), "install", "--no-deps", "--no-index",
                  "--no-build-isolation", REPO], cwd=tmp_path)
  assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = _run([str(bin_dir / "python"), "-c",
                "import realnvp_tf; print(realnvp_tf.__file__)"], cwd=elsewhere)
  assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr

  # (absl's --help exits with status 1 after printing the flags.)
  train = _run([str(bin_dir / "realnvp-train"), "--help"], cwd=elsewhere)
  assert "Traceback" not in train.stderr, train.stderr[-2000:]
  for flag in ("--model_dir", "--config", "--dataset", "--num_scales"):
    assert flag in train.stdout
  evaluate = _run([str(bin_dir / "realnvp-eval"), "--help"], cwd=elsewhere)
  assert "Traceback" not in evaluate.stderr, evaluate.stderr[-2000:]
  assert "--saved_model" in evaluate.stdout
  score = _run([str(bin_dir / "realnvp-score"), "--help"], cwd=elsewhere)
  assert "Traceback" not in score.stderr, score.stderr[-2000:]
  assert "--images" in score.stdout and "--output" in score.stdout
  # The configs ship with the package: an unknown name lists the bundled ones.
  unknown = _run([str(bin_dir / "realnvp-train"), "--config=nope",
                  "--model_dir=run"], cwd=elsewhere)
  assert unknown.returncode != 0
  assert "--config=nope is not a bundled config" in unknown.stderr
  for name in ("mnist", "cifar10", "quickstart"):
    assert name in unknown.stderr
  assert "Traceback" not in unknown.stderr
  # A bundled config by name is read as a flagfile (a bad override shows it parsed).
  parsed = _run([str(bin_dir / "realnvp-train"), "--config=smoke", "--num_scales=5",
                 "--model_dir=run"], cwd=elsewhere)
  assert parsed.returncode != 0
  assert "--dataset=digits: 8x8 images are not divisible" in parsed.stderr
  # The shipped models come with the install: loaded from the venv, nothing fetched.
  shipped = _run([str(bin_dir / "python"), "-c",
                  "import realnvp_tf; from realnvp_tf import pretrained; "
                  "m = realnvp_tf.load_pretrained('digits'); "
                  "print(pretrained.stored_path('digits'), m.image_shape)"],
                 cwd=elsewhere)
  assert shipped.returncode == 0, shipped.stderr[-2000:]
  assert shipped.stdout.strip().startswith(str(venv)), shipped.stdout
  assert shipped.stdout.strip().endswith("(8, 8, 1)"), shipped.stdout
  # The README's first command on a fresh install: a folder of 28x28 digit PNGs
  # (the bundled 8x8 digits, enlarged) scored by the shipped MNIST model.
  folder = tmp_path / "my_digits"
  folder.mkdir()
  digits = next(iter(data.make_uint8_dataset("digits", "test").batch(3))).numpy()
  for i, image in enumerate(digits):
    large = tf.image.resize(image.astype(np.float32) * 255 / 16, (28, 28))
    tf.io.write_file(str(folder / f"{i}.png"),
                     tf.io.encode_png(tf.cast(tf.round(large), tf.uint8)))
  scored = _run([str(bin_dir / "realnvp-score"), "--pretrained=mnist",
                 f"--images={folder}", "--output=scores.csv"], cwd=elsewhere)
  assert scored.returncode == 0, scored.stderr[-2000:]
  rows = (elsewhere / "scores.csv").read_text().strip().splitlines()
  assert len(rows) == 4 and "bits_per_dim" in rows[0], rows
  # The embedded digits set is package data: the installed eval reads its test split.
  evaluated = _run([str(bin_dir / "realnvp-eval"), "--pretrained=digits",
                    "--output=digits.json"], cwd=elsewhere)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  assert json.loads((elsewhere / "digits.json").read_text())["num_images"] == 297
