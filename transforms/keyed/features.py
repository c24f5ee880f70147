"""Checks that each keyed record can feed the model's signature.

Catching bad records before inference keeps one bad record from failing a
whole batch, and gives the user a precise reason per record: a missing or
wrong-typed feature, empty text, or text over the size limit. The record
itself travels on unchanged; the model handler reads the mapped fields.
"""
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject

STAGE = 'features'
DEFAULT_MAX_TEXT_BYTES = 100_000


def _scalar(value):
  while isinstance(value, (list, tuple)) and value:
    value = value[0]
  return value


def _problem(value, spec, max_text_bytes):
  """(reason, detail) when `value` cannot feed a tensor of `spec`, else None."""
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
  or None when the record is valid. One rule for every path that validates
  (record by record in ValidateFeatures, a chunk at a time in
  transforms.keyed.keyed_input)."""
  for name, field, spec in checks:
    value = record.get(field)
    if value is None:
      return ('missing_feature',
              f'field {field!r} (signature input {name!r}) is missing')
    problem = _problem(value, spec, max_text_bytes)
    if problem:
      return problem[0], f'field {field!r}: {problem[1]}'
  return None


@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _ValidateFeatures(beam.DoFn):

  def __init__(self, input_specs, feature_map, max_text_bytes):
    self._checks = feature_checks(input_specs, feature_map)
    self._max = max_text_bytes
    self._valid = Metrics.counter(STAGE, 'valid')

  def process(self, element):
    key, record = element
    problem = feature_problem(record, self._checks, self._max)
    if problem:
      yield reject(key, STAGE, problem[0], record, problem[1])
      return
    self._valid.inc()
    yield element


class ValidateFeatures(beam.PTransform):
  """(key, record) -> the same, when every signature input can be fed.

  input_specs: {input name: models.runtime.signatures.TensorSpec}
  feature_map: {input name: record field}; unmapped inputs read the field of
  the same name.
  """

  def __init__(self, input_specs, feature_map=None,
               max_text_bytes=DEFAULT_MAX_TEXT_BYTES):
    super().__init__()
    self._fn = _ValidateFeatures(input_specs, feature_map or {}, max_text_bytes)

  def expand(self, keyed):
    return keyed | RoutedParDo(self._fn)
