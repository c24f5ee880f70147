"""The prediction library: one loaded SavedModel, called by signature name.

Every serving path (Beam batch and streaming, two-phase, evaluation, the
online endpoint) goes through this class, so there is exactly one
implementation of "turn a batch of instances into tensors, call a signature,
split the outputs back per instance".

- Loaded once per process: `load(model_dir)` caches by path under a lock, so
  threads (Beam's DoFn threads, the web server's workers) share one model.
- Thread safe: concrete TF functions may be called concurrently.
- JSON friendly: outputs come back as Python scalars, lists and str.
"""
import numpy as np

from models.runtime import signatures as sigs
from common.process_cache import load_once



class InputError(ValueError):
  """The instances do not fit the signature (names, types, shapes)."""


# What tf.constant raises for values it cannot convert: TypeError/ValueError,
# and SystemError for an integer beyond the dtype's range (the OverflowError
# surfaces through TensorFlow's C conversion code as a SystemError).
_CONVERSION_ERRORS = (TypeError, ValueError, OverflowError, SystemError)


def load(model_dir):
  """Returns the process-wide Predictor for `model_dir`, loading it once."""
  return load_once(('saved_model', model_dir), lambda: Predictor(model_dir))


def _column_to_python(array):
  """One output tensor (as numpy) -> a list with one JSON-friendly value per
  instance. Shape [N, 1] becomes scalars, longer trailing dims lists."""
  if array.ndim == 2 and array.shape[1] == 1:
    array = array[:, 0]
  if array.dtype.kind in ('O', 'S'):
    return [_decode(v) for v in array.tolist()]
  return array.tolist()


def _decode(value):
  if isinstance(value, bytes):
    return value.decode('utf-8', errors='replace')
  if isinstance(value, list):
    return [_decode(v) for v in value]
  return value


def _type_problem(value, spec):
  """Why `value` cannot feed a tensor of `spec`, or None if it can."""
  scalars = value
  while isinstance(scalars, (list, tuple)) and scalars:
    scalars = scalars[0]
  if spec.is_string:
    if not isinstance(scalars, (str, bytes)):
      return f'expects {spec.dtype}, got {type(scalars).__name__}'
  elif spec.dtype == 'bool':
    if not isinstance(scalars, (bool, np.bool_)):
      return f'expects bool, got {type(scalars).__name__}'
  elif isinstance(scalars, (str, bytes)) or scalars is None:
    return f'expects {spec.dtype}, got {type(scalars).__name__}'
  return None


def _unconvertible(value, spec):
  """Why a value that passed _type_problem still does not convert alone."""
  if isinstance(value, str):
    return 'is not valid Unicode text'
  if isinstance(value, int) and not isinstance(value, bool):
    return f'is an integer out of range for {spec.dtype}'
  if isinstance(value, float):
    return f'is a number that is not a valid {spec.dtype}'
  return f'cannot be converted to {spec.dtype}'


class Predictor:
  """A SavedModel and its serving signatures."""

  def __init__(self, model_dir):
    import tensorflow as tf
    self.model_dir = model_dir
    self.signatures = sigs.read_signatures(model_dir)
    self._model = tf.saved_model.load(sigs.resolve_model_dir(model_dir))
    self._functions = {name: self._model.signatures[name]
                       for name in self.signatures}
    self._tf = tf

  def signature(self, name=sigs.DEFAULT_SIGNATURE):
    if name not in self.signatures:
      raise sigs.SignatureNotFound(
          f'unknown signature {name!r}; the model has: '
          f'{", ".join(sorted(self.signatures))}')
    return self.signatures[name]

  def predict_columns(self, columns, signature_name=sigs.DEFAULT_SIGNATURE):
    """Calls a signature on columns {input name: list of values}.

    Returns {output name: list of JSON-friendly values}, one per instance.
    This is the hot path of batch inference: one tensor per input, one
    `.numpy().tolist()` per output, no per-instance Python work.
    """
    sig = self.signature(signature_name)
    missing = sorted(set(sig.inputs) - set(columns))
    extra = sorted(set(columns) - set(sig.inputs))
    if missing or extra:
      raise InputError(
          f'signature {signature_name!r} takes inputs '
          f'{sorted(sig.inputs)}; missing {missing}, unexpected {extra}')
    tensors = {}
    for name, spec in sig.inputs.items():
      try:
        tensors[name] = self._tf.constant(columns[name], dtype=spec.dtype)
      except _CONVERSION_ERRORS as e:
        raise InputError(
            self._first_problem(name, columns[name], spec)) from e
    outputs = self._functions[signature_name](**tensors)
    return {name: _column_to_python(t.numpy()) for name, t in outputs.items()}

  def _first_problem(self, name, values, spec):
    """Names the first instance that keeps the column from converting: a
    wrong type, a value that does not convert even alone (an integer out of
    range, a fraction for an integer, text that is not valid Unicode), or a
    shape unlike instance 0's. Runs only once the column has failed."""
    for i, v in enumerate(values):
      problem = _type_problem(v, spec)
      if problem:
        return f'instance {i}: input {name!r} {problem}'
    shapes = []
    for i, v in enumerate(values):
      try:
        shapes.append(self._tf.constant([v], dtype=spec.dtype).shape[1:]
                      .as_list())
      except _CONVERSION_ERRORS:
        return f'instance {i}: input {name!r} {_unconvertible(v, spec)}'
      if shapes[i] != shapes[0]:
        return (f'instance {i}: input {name!r} has shape {shapes[i]}, '
                f'instance 0 has {shapes[0]}')
    return f'input {name!r} cannot be converted to {spec.describe()}'

  def predict(self, instances, signature_name=sigs.DEFAULT_SIGNATURE):
    """Predicts a list of instances; returns one output dict per instance.

    Instances follow TF Serving's row format: a dict {input name: value}, or
    a bare value when the signature has a single input.
    """
    sig = self.signature(signature_name)
    names = list(sig.inputs)
    columns = {name: [] for name in names}
    for i, instance in enumerate(instances):
      if not isinstance(instance, dict):
        if len(names) != 1:
          raise InputError(
              f'instance {i}: signature {signature_name!r} takes named '
              f'inputs {names}; send an object per instance')
        instance = {names[0]: instance}
      unknown = sorted(set(instance) - set(names))
      absent = sorted(set(names) - set(instance))
      if unknown or absent:
        raise InputError(
            f'instance {i}: signature {signature_name!r} takes inputs '
            f'{names}; missing {absent}, unexpected {unknown}')
      for name in names:
        problem = _type_problem(instance[name], sig.inputs[name])
        if problem:
          raise InputError(f'instance {i}: input {name!r} {problem}')
        columns[name].append(instance[name])
    if not instances:
      return []
    outputs = self.predict_columns(columns, signature_name)
    out_names = list(outputs)
    return [dict(zip(out_names, row)) for row in zip(*outputs.values())]
