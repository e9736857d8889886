"""The package as users get it: its import graph, and `pip install .` with its console
scripts and bundled configs."""

import ast
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "realnvp_tf")


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


def test_no_module_imports_one_that_imports_it_back():
  modules = _modules()
  graph = {name: _imports(path, modules) for name, path in modules.items()}
  assert "realnvp_tf.training" in graph and "realnvp_tf.data.pipeline" in graph
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
  assert "--dataset=digits means 8x8 images" in parsed.stderr
