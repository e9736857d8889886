"""One-line reports of exceptions, for the errors this package raises on top of them
(unreadable image files here, unrestorable checkpoints in `runs`)."""

import re


def first_line(error):
  """The first line of an error's message (at most 200 characters), without the
  function-node prefix and the op suffix of TensorFlow's eager errors; the error's
  type name when it has no message."""
  text = (getattr(error, "message", None) or str(error)).strip()
  if not text:
    return type(error).__name__
  text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text.splitlines()[0])
  # Eager errors end in "[Op:DecodePng]", or "[Op:DecodePng] name: " with the op's name.
  return re.sub(r"\s*\[Op:\w+\](?:\s*name:.*)?$", "", text)[:200]
