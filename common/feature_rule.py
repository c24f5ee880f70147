"""The rule that decides whether a record can feed a model's signature.

One rule for every path that validates: the Beam pipelines (record by record
in transforms.keyed.features.ValidateFeatures, a chunk at a time in
transforms.keyed.keyed_input) dead-letter a record it rejects, with its
reason; the online endpoint (serving.request) answers 400 for the same
texts. Plain Python (no Beam, no TensorFlow), so the server can use it
without importing Beam.

Reasons: missing_feature, wrong_type (a value of another type, or of
another shape than the input's minus its batch dimension: a list where a
string[None] input takes one string), empty_text (empty or whitespace-only
text), text_too_long (over max_text_bytes UTF-8 bytes).
"""

DEFAULT_MAX_TEXT_BYTES = 100_000


def value_shape(value):
  """The nested-list shape of a JSON value: () for a scalar, (3,) for a list
  of three; ragged lists are left to tensor conversion to report."""
  dims = []
  while isinstance(value, (list, tuple)):
    dims.append(len(value))
    if not value:
      break
    value = value[0]
  return tuple(dims)


def describe_shape(shape):
  if not shape:
    return 'a scalar'
  return 'shape [' + ', '.join('None' if d == -1 else str(d)
                               for d in shape) + ']'


def shape_problem(value, spec):
  """Why `value` does not have one instance's shape of `spec` (the input's
  shape minus its batch dimension), or None; an input of unknown rank
  takes any shape."""
  if not spec.shape:
    return None
  expected, got = spec.shape[1:], value_shape(value)
  if len(got) != len(expected) or any(
      e not in (-1, g) for e, g in zip(expected, got)):
    return (f'takes {describe_shape(expected)} per instance, got '
            f'{describe_shape(got)}')
  return None


def _scalar(value):
  while isinstance(value, (list, tuple)) and value:
    value = value[0]
  return value


def _problem(value, spec, max_text_bytes):
  """(reason, detail) when `value` cannot feed a tensor of `spec`, else None."""
  if isinstance(value, (list, tuple)):
    problem = shape_problem(value, spec)
    if problem:
      return 'wrong_type', problem
  scalar = _scalar(value)
  if spec.is_string:
    if not isinstance(scalar, (str, bytes)):
      return 'wrong_type', f'expects {spec.dtype}, got {type(scalar).__name__}'
    if not scalar or scalar.isspace():  # no stripped copy of every text
      return 'empty_text', 'text is empty'
    # A str takes 1 to 4 UTF-8 bytes per character: encode (a copy of every
    # text, on the hot path) only when its length alone cannot decide.
    if isinstance(scalar, str) and len(scalar) * 4 <= max_text_bytes:
      return None
    size = len(scalar.encode('utf-8')) if isinstance(scalar, str) else len(scalar)
    if size > max_text_bytes:
      return 'text_too_long', f'{size} bytes > limit {max_text_bytes}'
    return None
  if spec.dtype == 'bool':
    ok = isinstance(scalar, bool)
  else:
    ok = isinstance(scalar, (int, float)) and not isinstance(scalar, bool)
  if not ok:
    return 'wrong_type', f'expects {spec.dtype}, got {type(scalar).__name__}'
  return None


def feature_checks(input_specs, feature_map):
  """[(input name, record field, spec)]: what feature_problem checks."""
  return [(name, feature_map.get(name, name), spec)
          for name, spec in input_specs.items()]


def feature_problem(record, checks, max_text_bytes):
  """(reason, detail) for the first feature that cannot feed the signature,
  or None when the record is valid; every path that validates calls this
  (see the module docstring)."""
  for name, field, spec in checks:
    value = record.get(field)
    if value is None:
      return ('missing_feature',
              f'field {field!r} (signature input {name!r}) is missing')
    problem = _problem(value, spec, max_text_bytes)
    if problem:
      return problem[0], f'field {field!r}: {problem[1]}'
  return None
