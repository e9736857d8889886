"""Weights put in place for a while: the one way a run evaluates other weights than
the ones it trains (the EMA averages, best/'s, statistics re-estimated for them)."""

import contextlib


@contextlib.contextmanager
def swapped(variables, new_values=None):
  """Context: `new_values` in `variables`, the values they had always put back on exit
  (an exception inside included, and one while loading the new values: a partial
  checkpoint restore is undone).

  `new_values`: a sequence of values (arrays, tensors or variables) in `variables`'
  order; a callable that assigns them itself (a checkpoint restore, a re-estimation
  of batch-norm statistics); or None (the weights stay as they are, and are put back
  all the same).
  """
  variables = list(variables)
  saved = [variable.numpy() for variable in variables]
  try:
    if callable(new_values):
      new_values()
    elif new_values is not None:
      for variable, value in zip(variables, new_values, strict=True):
        variable.assign(value)
    yield
  finally:
    for variable, value in zip(variables, saved, strict=True):
      variable.assign(value)
