"""What the programs set up in their own process (never the library, on import):
TensorFlow imported with its start-up lines held back, its INFO log lines filtered,
one malloc arena, and an exit that skips the interpreter's teardown.

On a machine without a GPU, importing TensorFlow and listing its devices prints a
oneDNN notice and CUDA probing lines, some twice, one of them an error line ("failed
call to cuInit") that reads like a failure although nothing failed. They come from
C++ logging before it is set up, which TF_CPP_MIN_LOG_LEVEL does not reach, so they
are held back by pointing the process's stderr elsewhere for that moment. If the
import fails, what was held back is printed with the error. TF_CPP_MIN_LOG_LEVEL
defaults to 2 (TensorFlow's C++ errors only; its runtime notes, such as tf.data's
about caches read partly, are not for users of this package). Set
REALNVP_TF_STARTUP_LOGS=1 to see everything.
"""

import atexit
import ctypes
import logging as python_logging
import os
import sys
import tempfile

from absl import app
from absl import logging

SHOW_ENV = "REALNVP_TF_STARTUP_LOGS"
# mallopt(3) parameter number of M_ARENA_MAX in glibc's malloc.h.
_M_ARENA_MAX = -8


def import_tensorflow_quietly():
  """Imports TensorFlow (and lists its devices) with fd 2 held back, C++ log level 2
  unless set; a no-op when TensorFlow is already imported or REALNVP_TF_STARTUP_LOGS
  is set."""
  if "tensorflow" in sys.modules or os.environ.get(SHOW_ENV, "") not in ("", "0"):
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    stderr_fd = sys.stderr.fileno()
  except (AttributeError, OSError, ValueError):  # no real stderr (some notebooks)
    return
  sys.stderr.flush()
  saved = os.dup(stderr_fd)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), stderr_fd)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # the CUDA probing happens here
    except BaseException:
      sys.stderr.flush()
      os.dup2(saved, stderr_fd)
      held.seek(0)
      os.write(stderr_fd, held.read())
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, stderr_fd)
      os.close(saved)


def limit_malloc_arenas(count=1):
  """Caps glibc's malloc arenas for threads started from now on; False if not glibc.

  With one arena per TensorFlow thread (glibc's default), the memory that preparing the
  training step's graph frees stays behind in arenas the activations are not allocated
  from; with one arena it is reused (docs/performance.md has the figures). Call it
  before the first TensorFlow op runs.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (AttributeError, OSError):
    return False
  return mallopt(_M_ARENA_MAX, int(count)) == 1


def keep_only_own_info_lines(show_all=lambda: False):
  """Drops the INFO lines of other libraries (TensorFlow's saver timings,
  tensorflow-datasets' "Load dataset info from ..." and "Constructing
  tf.data.Dataset ...") from absl's log; warnings and errors of every library, and
  this package's own lines, pass. `show_all()` True (e.g. a flag) lets everything
  through.

  absl's handler passes records to its Python handler without consulting its own
  filters, so the filter goes there.
  """
  def keep(record):
    return (record.levelno >= python_logging.WARNING or _OWN_FILES in record.pathname
            or show_all())

  logging.get_absl_handler().python_handler.addFilter(keep)
  return keep


def run_main(main, argv=None):
  """absl's `app.run(main, argv)`, then the end of the process with main's exit
  status through `exit_without_teardown` (app.run always ends in SystemExit)."""
  try:
    app.run(main, argv=argv)
  except SystemExit as end:
    exit_without_teardown(end.code)


def exit_without_teardown(code):
  """Ends the process with exit status `code` (as `sys.exit` takes it) after what an
  ordinary exit does that anyone can see (the `atexit` handlers: log handlers,
  temporary directories; stdout and stderr flushed), but without the interpreter's
  teardown, which after a TensorFlow run frees its objects one by one: 2.3-2.5 s
  after a smoke-settings train.py, about 1 s after only importing TensorFlow
  (docs/performance.md). The programs close their own files and TensorBoard writers
  before this.

  Raises SystemExit instead (the ordinary exit) in an interactive session, where
  the interpreter must survive, and in a multi-worker process (`TF_CONFIG` set),
  whose exit TensorFlow coordinates with the other workers.
  """
  if _interactive() or os.environ.get("TF_CONFIG"):
    raise SystemExit(code)
  if code is None:
    status = 0
  elif isinstance(code, int):
    status = code
  else:  # sys.exit("message"): the message on stderr, status 1
    print(code, file=sys.stderr)
    status = 1
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (AttributeError, OSError, ValueError):
      pass
  os._exit(status)  # pylint: disable=protected-access


def _interactive():
  """Whether this is an interactive interpreter or an IPython shell (a notebook);
  IPython imported by a library (tensorflow-datasets does) is not one."""
  ipython = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)
  return hasattr(sys, "ps1") or bool(sys.flags.interactive) or ipython() is not None


# Where this package's own log lines come from.
_OWN_FILES = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
