"""Faults and bad input: each case ends in a one-line error or is survived, nothing
lost (docs/reliability.md lists them)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from realnvp_tf import data
from realnvp_tf import training
from realnvp_tf.model import config as config_lib
from realnvp_tf.runs import directory
from realnvp_tf.training import selection

import trainer_fixtures as fx

SHARED_DATA = os.environ.get("REALNVP_TF_SHARED_DATA")
NOISE = ("I0000", "W0000", "E0000", "WARNING: All log messages before absl")


def _own_lines(stderr):
  """stderr without TensorFlow's C++ lines (tests run with TF_CPP_MIN_LOG_LEVEL=2 in
  their environment, which holds back most but not the ones before absl starts)."""
  return [line for line in stderr.strip().splitlines()
          if line.strip() and not line.startswith(NOISE)]


def _train(model_dir, *flags, env=None):
  return subprocess.run(fx.train_cmd(model_dir, *flags), env=env or fx.env(),
                        capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------- one-line CLI errors


def _quiet_env(**extra):
  """The environment a user has: no TF_CPP_MIN_LOG_LEVEL of its own."""
  env = fx.env(**extra)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  return env


def test_errors_are_one_line_without_tensorflow_start_up_noise(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(fx.REPO, "eval.py"),
       f"--saved_model={tmp_path / 'missing'}"], env=_quiet_env(),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"eval.py: error: --saved_model={tmp_path / 'missing'}: no such directory."]
  # The start-up lines come back on request.
  shown = subprocess.run(
      [sys.executable, os.path.join(fx.REPO, "eval.py"),
       f"--saved_model={tmp_path / 'missing'}"],
      env=_quiet_env(REALNVP_TF_STARTUP_LOGS="1"), capture_output=True, text=True,
      timeout=300)
  assert len(shown.stderr.strip().splitlines()) > 1


@pytest.mark.parametrize("make_dir,message", [
    (lambda p: p / "a_file", "is a file, not a directory"),
    (lambda p: p / "a_file" / "run", "cannot be created or written"),
    (lambda p: "/proc/realnvp_run", "cannot be created or written"),
])
def test_bad_run_directories_fail_in_one_line_before_training(tmp_path, make_dir,
                                                              message):
  (tmp_path / "a_file").write_text("not a directory")
  result = _train(make_dir(tmp_path), env=_quiet_env())
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
  assert lines[0].startswith("train.py: error: --model_dir=")


def test_non_finite_settings_are_refused():
  for name in ("learning_rate", "clip_norm", "l2_coeff", "ema_decay"):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
      fx.train_config(**{name: float("nan")})
  with pytest.raises(ValueError, match="learning_rate must be a finite number"):
    fx.train_config(learning_rate=float("inf"))
  for name in ("batch_norm_momentum", "logit_alpha"):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
      config_lib.RealNVPConfig(**{name: float("nan")})


@pytest.mark.parametrize("flag", ["--learning_rate=nan", "--clip_norm=inf",
                                  "--l2_coeff=nan", "--batch_norm_momentum=nan",
                                  "--logit_alpha=nan", "--ema_decay=nan"])
def test_non_finite_flags_are_refused_by_the_command_line(tmp_path, flag):
  result = _train(tmp_path / "run", flag)
  assert result.returncode != 0
  assert "must be a finite number" in result.stderr
  assert "Flags parsing error" in result.stderr  # refused with the flags, first
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "run")


def test_a_non_finite_final_model_is_neither_recorded_nor_exported(tmp_path):
  trainer = training.Trainer(fx.model_config(), fx.train_config(train_steps=1,
                                                               export=True),
                             str(tmp_path), strategy=fx.strategy(1))
  trainer.train(progress=False)
  trainer.state.flow.trainable_variables[0].assign(
      tf.fill(trainer.state.flow.trainable_variables[0].shape, np.nan))
  with pytest.raises(training.NonFiniteLossError, match="nothing was exported"):
    trainer.finish()
  trainer.close()
  assert not os.path.exists(tmp_path / "export")
  assert not os.path.exists(tmp_path / "metrics.json")


# ------------------------------------------------------ resuming a run directory


def _short_run(model_dir, **kwargs):
  config = fx.train_config(train_steps=3, checkpoint_every=1,
                           batch_norm_recalibration_batches=0, **kwargs)
  trainer = training.Trainer(fx.model_config(), config, str(model_dir),
                             strategy=fx.strategy(1))
  trainer.fit(progress=False)
  return trainer


def test_resume_skips_a_truncated_latest_checkpoint(tmp_path, caplog):
  first = _short_run(tmp_path)
  data_file = tmp_path / "checkpoints" / "ckpt-3.data-00000-of-00001"
  data_file.write_bytes(data_file.read_bytes()[:100])  # a partial copy
  resumed = training.Trainer(fx.model_config(), fx.train_config(train_steps=3),
                             str(tmp_path), strategy=fx.strategy(1))
  assert resumed.restore() == 2
  skipped = [r for r in caplog.records if "Skipped checkpoint" in r.getMessage()]
  assert len(skipped) == 1 and "ckpt-3" in skipped[0].getMessage()
  at_two = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path / "b"),
                            strategy=fx.strategy(1))
  at_two.state.checkpoint.restore(str(tmp_path / "checkpoints" / "ckpt-2"))
  for a, b in zip(resumed.state.flow.variables, at_two.state.flow.variables,
                  strict=True):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  del first
  resumed.close()
  # None restores (and the pointer file is lost too): one line naming the directory.
  for path in glob.glob(str(tmp_path / "checkpoints" / "ckpt-*.index")):
    with open(path, "r+b") as f:
      f.truncate(10)
  os.remove(tmp_path / "checkpoints" / "checkpoint")
  result = _train(tmp_path)
  assert result.returncode == 1
  lines = _own_lines(result.stderr)
  assert lines[-1].startswith(f"train.py: error: No checkpoint in {tmp_path}"), lines
  assert (sum("error:" in line for line in lines) == 1
          and "Traceback" not in result.stderr)


def test_a_failed_checkpoint_write_leaves_the_pointer_on_the_last_good_one(tmp_path):
  trainer = _short_run(tmp_path)
  checkpoint = trainer.state.checkpoint

  def disk_full(prefix, options=None):
    with open(prefix + ".data-00000-of-00001", "wb") as f:
      f.write(b"partial")
    raise OSError(28, "No space left on device")

  checkpoint._write = disk_full  # pylint: disable=protected-access
  with pytest.raises(OSError):
    trainer.manager.save(checkpoint_number=4)
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-3")
  assert directory.RunDirectory(tmp_path).latest_checkpoint().endswith("ckpt-3")


def test_resume_with_other_model_settings_says_which_in_one_line(tmp_path):
  trainer = _short_run(tmp_path)
  trainer.close()
  result = _train(tmp_path, "--num_filters=8", "--ema_decay=0.9")
  assert result.returncode == 1
  lines = _own_lines(result.stderr)
  assert len(lines) == 1 and len(lines[0]) < 600, result.stderr[-3000:]
  assert "num_filters=4 (now 8)" in lines[0] and "ema_decay=0.0 (now 0.9" in lines[0]
  assert "new --model_dir" in lines[0]
  # Changing the precision, the dropout, the step count or the learning rate is a
  # resume like any other, and the new rate is the one the optimizer uses (a step
  # decay by hand).
  config = fx.train_config(train_steps=4, checkpoint_every=1, learning_rate=2.5e-4,
                           batch_norm_recalibration_batches=0)
  assert config.learning_rate != fx.train_config().learning_rate
  other = config_lib.RealNVPConfig(**dict(
      vars(fx.model_config()), compute_dtype="bfloat16", dropout_rate=0.2))
  resumed = training.Trainer(other, config, str(tmp_path), strategy=fx.strategy(1))
  assert resumed.restore() == 3
  assert int(resumed.state.optimizer.iterations.numpy()) == 3
  assert float(np.asarray(resumed.state.optimizer.learning_rate)) == pytest.approx(
      2.5e-4)
  resumed.close()


def test_two_writers_on_one_run_directory(tmp_path):
  holder = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                            strategy=fx.strategy(1))
  with pytest.raises(ValueError, match=(
      rf"model_dir={tmp_path} is in use by another training run \(pid "
      rf"{os.getpid()} on ")):
    training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                     strategy=fx.strategy(1))
  holder.close()  # released: the next run may start
  training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                   strategy=fx.strategy(1)).close()
  # A process killed with the lock held does not leave it stuck.
  script = ("import sys, time\n"
            "from realnvp_tf.runs import directory\n"
            f"run = directory.RunDirectory({str(tmp_path)!r})\n"
            "run.open_for_writing()\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n")
  process = subprocess.Popen([sys.executable, "-c", script], env=fx.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
  assert process.stdout.readline().strip() == "locked"
  result = _train(tmp_path)
  assert result.returncode == 1
  lines = _own_lines(result.stderr)
  assert len(lines) == 1 and f"pid {process.pid} on " in lines[0], result.stderr[-2000:]
  process.send_signal(signal.SIGKILL)
  process.wait()
  run = directory.RunDirectory(tmp_path)
  run.open_for_writing()
  run.close()


# --------------------------------------------------------------- wrong datasets


def _fake_idx_files(folder, content):
  folder.mkdir()
  for name in data.get_dataset_info("mnist").source.manual_files:
    (folder / name).write_bytes(content(name))


def test_manual_files_that_are_not_the_official_ones_are_refused(tmp_path):
  _fake_idx_files(tmp_path / "fake",
                  lambda name: b"not the official file " + name.encode())
  with pytest.raises(data.DataUnavailableError) as error:
    data.prepare_dataset("mnist", data_dir=str(tmp_path / "tfds"),
                         manual_dir=str(tmp_path / "fake"))
  message = str(error.value)
  assert "not the official mnist file" in message and "matches no dataset" in message
  assert not os.path.exists(tmp_path / "tfds" / "mnist")


@pytest.mark.skipif(not SHARED_DATA, reason="REALNVP_TF_SHARED_DATA is not set (a "
                    "folder with mnist/ and fashion_mnist/ holding the official files)")
def test_another_datasets_official_files_are_named(tmp_path):
  fashion = os.path.join(SHARED_DATA, "fashion_mnist")
  with pytest.raises(data.DataUnavailableError) as error:
    data.prepare_dataset("mnist", data_dir=str(tmp_path / "tfds"), manual_dir=fashion)
  message = str(error.value)
  assert "are fashion_mnist's official files" in message, message
  assert "train-images-idx3-ubyte.gz" in message


# ---------------------------------------------------------- workers preempted


def test_sigterm_to_one_worker_saves_a_checkpoint_and_every_worker_exits_0(tmp_path):
  model_dir = tmp_path / "run"
  processes, logs = fx.start_workers(tmp_path, lambda index: fx.train_cmd(
      model_dir, "--train_steps=100000", "--checkpoint_every=5", "--eval_every=0"))
  deadline = time.time() + 600
  while not os.path.exists(model_dir / "checkpoints" / "ckpt-5.index"):
    assert time.time() < deadline, "no checkpoint within 10 minutes"
    assert all(p.poll() is None for p in processes), [p.poll() for p in processes]
    time.sleep(0.2)
  time.sleep(1.0)
  processes[1].send_signal(signal.SIGTERM)  # the worker that is not the chief
  start = time.time()
  for process in processes:
    process.wait(timeout=300)
  took = time.time() - start
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append(log.read())
  assert [p.returncode for p in processes] == [0, 0], (outputs[0][-2000:]
                                                       + outputs[1][-2000:])
  steps = []
  for output in outputs:
    saved = [line for line in output.splitlines() if "Preempted" in line]
    assert len(saved) == 1, output[-2000:]
    steps.append(int(saved[0].split("checkpoint saved at step ")[1].split(";")[0]))
  assert steps[0] == steps[1] > 5  # the same step on both workers
  assert os.path.exists(model_dir / "checkpoints" / f"ckpt-{steps[0]}.index")
  print(f"both workers exited {took:.1f} s after the SIGTERM, at step {steps[0]}")
  assert took < 120
  assert not glob.glob(str(model_dir / "export"))
  shutil.rmtree(model_dir)


# ------------------------------------------------------- resuming on other data


def _write_pngs(folder, count, seed, start=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(start, start + count):
    image = rng.integers(0, 256, (8, 8, 1)).astype(np.uint8)
    tf.io.write_file(str(folder / f"{i:03d}.png"), tf.io.encode_png(image))


def _folder_config(folder, **kwargs):
  values = dict(dataset=data.IMAGE_DIR, image_dir=str(folder), image_size="8",
                channels=1, batch_size=8,
                train_steps=2, checkpoint_every=1, eval_every=0, log_every=1,
                export=False, batch_norm_recalibration_batches=0)
  return training.TrainConfig(**dict(values, **kwargs))


def _folder_trainer(model_dir, folder, **kwargs):
  model = config_lib.RealNVPConfig(image_shape=(8, 8, 1), num_levels=256,
                                   num_scales=2, num_res_blocks=1, num_filters=4)
  return training.Trainer(model, _folder_config(folder, **kwargs), str(model_dir),
                          strategy=fx.strategy(1))


def test_resuming_on_other_data_is_refused_in_one_line_unless_allowed(tmp_path, caplog):
  first, second = tmp_path / "first", tmp_path / "second"
  _write_pngs(first, 60, seed=1)
  _write_pngs(second, 60, seed=2, start=100)  # other files
  run = tmp_path / "run"
  _folder_trainer(run, first).fit(progress=False)
  cases = [
      (dict(folder=second), ["image_dir=", f"(now '{second}')", "the files of its"]),
      (dict(folder=first, validation_fraction=0.3),
       ["validation_fraction=0.1 (now 0.3)", "splits="]),
  ]
  for change, named in cases:
    folder = change.pop("folder")
    with pytest.raises(ValueError) as refused:
      _folder_trainer(run, folder, **change)
    message = str(refused.value)
    assert "\n" not in message and "was trained on other data" in message
    assert "allow_data_change=True" in message and "--" not in message, message
    for part in named:
      assert part in message, (part, message)
  # A folder extended on purpose: refused, then allowed (one warning saying what).
  _write_pngs(first, 12, seed=3, start=60)
  with pytest.raises(ValueError, match="the files of its train split"):
    _folder_trainer(run, first)
  resumed = _folder_trainer(run, first, allow_data_change=True, train_steps=3)
  resumed.fit(progress=False)
  warnings = [r.getMessage() for r in caplog.records
              if "on other data than it was trained on" in r.getMessage()]
  assert len(warnings) == 1 and "the files of its train split" in warnings[0]
  assert int(resumed.state.step.numpy()) == 3
  # The extended folder is now the run's data: resuming on it needs no flag.
  _folder_trainer(run, first, train_steps=3).close()


def test_a_run_from_before_data_fingerprints_resumes_on_its_settings(tmp_path):
  # config.json without "data", as runs wrote it before the data fingerprint: a resume
  # still compares the data settings, and cannot compare the files.
  folder, run = tmp_path / "images", tmp_path / "run"
  _write_pngs(folder, 60, seed=1)
  _folder_trainer(run, folder).fit(progress=False)
  path = run / directory.CONFIG_FILE
  values = json.loads(path.read_text())
  del values["data"]
  path.write_text(json.dumps(values))
  assert directory.read_data_fingerprint(str(run)) is None
  with pytest.raises(ValueError, match=r"validation_fraction=0\.1 \(now 0\.3\)"):
    _folder_trainer(run, folder, validation_fraction=0.3)
  _write_pngs(folder, 12, seed=3, start=60)  # more files: nothing records the old ones
  resumed = _folder_trainer(run, folder, train_steps=3)
  assert resumed.restore() == 2
  resumed.fit(progress=False)
  assert int(resumed.state.step.numpy()) == 3
  # The finished resume records the fingerprint of the data it went on with.
  assert directory.read_data_fingerprint(str(run)) is not None


def test_a_changed_dataset_is_refused_by_train_py(tmp_path):
  # A run directory as a digits run leaves it (config.json is what the check reads).
  trainer = training.Trainer(fx.model_config(), fx.train_config(), str(tmp_path),
                             strategy=fx.strategy(1))
  trainer.run_dir.write_config(trainer.model_config, trainer.config,
                               trainer.data_fingerprint)
  trainer.close()
  result = _train(tmp_path, "--dataset=mnist", "--num_scales=1")
  assert result.returncode == 1
  lines = _own_lines(result.stderr)
  assert len(lines) == 1 and "dataset='digits' (now 'mnist')" in lines[0], lines
  assert "image_shape=(8, 8, 1) (now (28, 28, 1))" in lines[0]


# -------------------------------------------------------------- a corrupt best/


def _run_with_best(model_dir):
  trainer = training.Trainer(
      fx.model_config(), fx.train_config(train_steps=6, eval_every=3, export=False),
      str(model_dir), strategy=fx.strategy(1))
  trainer.fit(progress=False)
  assert os.path.isdir(model_dir / "best")
  return trainer


def _corrupt(folder):
  for path in glob.glob(str(folder / "*.data-*")):
    with open(path, "r+b") as f:
      f.truncate(40)


def test_a_corrupt_best_falls_back_to_the_latest_checkpoint_and_says_so(tmp_path,
                                                                        caplog):
  import realnvp_tf
  _run_with_best(tmp_path).close()
  x = fx.images(3)
  last = realnvp_tf.load(str(tmp_path), select="last")
  assert last.metadata["select"] == "last" and last.metadata["step"] == 6
  _corrupt(tmp_path / "best")
  caplog.clear()
  model = realnvp_tf.load(str(tmp_path))  # the run selects best
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1, warnings
  assert "best" in warnings[0] and "using the latest checkpoint" in warnings[0]
  assert "select=last" in warnings[0]
  assert model.metadata["select"] == "last" and model.metadata["step"] == 6
  np.testing.assert_allclose(model.log_prob(x), last.log_prob(x), rtol=1e-6)
  # eval.py --model_dir works on such a run, with the one warning line...
  evaluate = [sys.executable, os.path.join(fx.REPO, "eval.py"),
              f"--model_dir={tmp_path}", "--batch_size=512"]
  result = subprocess.run(evaluate, env=fx.env(), capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sum("using the latest checkpoint" in line
             for line in _own_lines(result.stderr)) == 1
  # ... and none with --select=last, which names the same weights.
  chosen = subprocess.run(evaluate + ["--select=last"], env=fx.env(),
                          capture_output=True, text=True, timeout=300)
  assert chosen.returncode == 0 and "latest checkpoint" not in chosen.stderr
  assert chosen.stdout == result.stdout
  # An unreadable best.json is the same fault.
  (tmp_path / "best" / "best.json").write_text("{not json")
  caplog.clear()
  assert realnvp_tf.load(str(tmp_path)).metadata["select"] == "last"
  assert any("best.json cannot be read" in r.getMessage() for r in caplog.records)


def test_training_that_ends_with_a_corrupt_best_exports_the_last_weights(tmp_path,
                                                                         caplog):
  trainer = _run_with_best(tmp_path)
  trainer.close()
  _corrupt(tmp_path / "best")
  resumed = training.Trainer(fx.model_config(), fx.train_config(
      train_steps=6, eval_every=3, export=False), str(tmp_path),
      strategy=fx.strategy(1))
  resumed.restore()
  resumed.best.step = 3  # a best older than the last step, on disk
  before = [v.numpy() for v in resumed.state.flow.variables]
  caplog.clear()
  with selection.selected_weights(resumed.state, resumed.best, "best") as (step, _):
    assert step == 6  # the last weights, not a half-restored mix
    for variable, value in zip(resumed.state.flow.variables, before, strict=True):
      np.testing.assert_array_equal(variable.numpy(), value)
  assert any("the last weights are evaluated and exported instead of the best"
             in r.getMessage() for r in caplog.records)
  resumed.close()


# ------------------------------------------------- signals off the main thread


def test_signals_cannot_be_caught_off_the_main_thread_and_a_warning_says_so(caplog,
                                                                            tmp_path):
  import threading

  from realnvp_tf.training import actions
  previous = signal.getsignal(signal.SIGTERM)
  with actions.SignalStop():  # the main thread: handlers in place, then put back
    assert signal.getsignal(signal.SIGTERM) is not previous
  assert signal.getsignal(signal.SIGTERM) is previous
  assert not [r for r in caplog.records if "main thread" in r.getMessage()]

  trainer = training.Trainer(fx.model_config(), fx.train_config(
      train_steps=2, checkpoint_every=2), str(tmp_path))
  # What the thread did comes back here: an exception raised in a thread (an
  # assertion, or signal.signal's ValueError off the main thread) would otherwise
  # only become a pytest warning, and this test could not fail.
  outcome = {}

  def fit_like():  # a notebook's worker thread training
    try:
      outcome["stopped"] = trainer.train(progress=False)
      outcome["handler"] = signal.getsignal(signal.SIGTERM)
    except BaseException as e:  # pylint: disable=broad-except
      outcome["error"] = e

  thread = threading.Thread(target=fit_like, name="notebook-worker")
  thread.start()
  thread.join(timeout=300)
  assert not thread.is_alive()
  assert "error" not in outcome, repr(outcome.get("error"))
  assert outcome["stopped"] is None and outcome["handler"] is previous
  assert int(trainer.state.step.numpy()) == 2  # trained to the end, checkpoint saved
  assert trainer.manager.latest_checkpoint.endswith("ckpt-2")
  trainer.close()
  warnings = [r.getMessage() for r in caplog.records if "main thread" in r.getMessage()]
  assert len(warnings) == 1 and "notebook-worker" in warnings[0]
  assert "will not save a checkpoint" in warnings[0]
  assert signal.getsignal(signal.SIGTERM) is previous


# ------------------------------------------------------------ what a user sees


def test_only_this_packages_info_lines_are_shown_unless_asked(tmp_path):
  import logging as python_logging

  from absl import logging
  import tensorflow_datasets as tfds

  from realnvp_tf.apps import process
  show = []
  keep = process.keep_only_own_info_lines(show_all=lambda: bool(show))
  try:
    def record(path, level=python_logging.INFO):
      return python_logging.LogRecord("absl", level, path, 1, "message", (), None)
    tfds_file = os.path.join(os.path.dirname(tfds.__file__), "core", "reader.py")
    tf_file = os.path.join(os.path.dirname(tf.__file__), "python", "saver.py")
    own_file = os.path.join(fx.REPO, "realnvp_tf", "training", "trainer.py")
    assert not keep(record(tfds_file)) and not keep(record(tf_file))
    assert keep(record(own_file)) and keep(record(tfds_file, python_logging.WARNING))
    show.append(True)  # --library_logs
    assert keep(record(tfds_file)) and keep(record(tf_file))
  finally:
    logging.get_absl_handler().python_handler.removeFilter(keep)
