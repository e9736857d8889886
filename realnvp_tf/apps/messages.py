"""Library errors as a program's one-line message, in the program's terms.

The library names its own arguments (`image_dir=/photos: no such directory`, "lower
batch_size"): a notebook user reads about what they passed. A program prints the same
message with its flags of those names (`--image_dir=/photos`, "lower --batch_size").
"""

import re

from absl import flags

FLAGS = flags.FLAGS


def program_flag_names():
  """The names of the flags this package's programs define (absl's own aside)."""
  return {flag.name for module, defined in FLAGS.flags_by_module_dict().items()
          if "realnvp_tf" in module or module.endswith((".py", "__main__"))
          for flag in defined}


def as_flags(message, flag_names):
  """`message` with each of `flag_names` written as a flag: `name=` always becomes
  `--name=`, and a bare name with an underscore (not an English word: `batch_size`,
  `model_dir`) becomes `--name`. Values are left alone: a name inside a path, a
  quoted value or a dotted Python name is not an argument's."""
  names = sorted(flag_names, key=len, reverse=True)
  if not names:
    return message
  pattern = re.compile(r"(?<![\w\-./'\"`])(" + "|".join(map(re.escape, names)) +
                       r")\b(=?)")

  def flag(match):
    name, equals = match.groups()
    return f"--{name}{equals}" if equals or "_" in name else match.group(0)

  return pattern.sub(flag, message)


def error_line(program, error):
  """`PROGRAM: error: MESSAGE` for `error`, its argument names as `program`'s flags."""
  return f"{program}: error: {as_flags(str(error), program_flag_names())}"
