"""TensorFlow imported with its start-up lines held back.

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

import os
import sys
import tempfile

SHOW_ENV = "REALNVP_TF_STARTUP_LOGS"


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
