"""Checks that each keyed record can feed the model's signature.

Catching bad records before inference keeps one bad record from failing a
whole batch, and gives the user a precise reason per record: a missing or
wrong-typed feature, empty text, or text over the size limit. The record
itself travels on unchanged; the model handler reads the mapped fields.
"""
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

# The rule itself is plain Python in common/, shared with the online
# endpoint (which does not import Beam).
from common.feature_rule import DEFAULT_MAX_TEXT_BYTES
from common.feature_rule import feature_checks
from common.feature_rule import feature_problem
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject

STAGE = 'features'


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
