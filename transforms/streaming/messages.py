"""Pub/Sub messages -> keyed, timestamped, validated records.

A streaming message goes through the batch job's rules, applied one message
at a time: JSON parsing (transforms.io.sources.parse_json_line), the key
rule (transforms.keyed.keys.KeyRule) and the feature rule
(common.feature_rule), with the same stages, reasons and dead-letter record;
a message whose bytes are not UTF-8 is an `invalid_text` dead letter with
its bytes kept (common/records/dead_letter.py: base64, flagged). Two things only a stream has: the key may be a
Pub/Sub attribute (`key_attribute`), and the element's event time comes from
a record field (`timestamp_field`) or stays the publish time Beam gave it.
"""
import dataclasses
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from common.config_error import ConfigError
from common.event_time import BadTimestamp
from common.event_time import parse_timestamp
from common.feature_rule import DEFAULT_MAX_TEXT_BYTES
from common.feature_rule import feature_checks
from common.feature_rule import feature_problem
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject
from transforms.io import sources
from transforms.keyed import features
from transforms.keyed import keys


@dataclasses.dataclass(frozen=True)
class MessageRules:
  """How a message becomes a keyed record.

  key_rule: a keys.KeyRule (used unless key_attribute is given).
  key_attribute: the Pub/Sub attribute holding the key, or None.
  timestamp_field: the record field holding the event time, or None (the
    publish time, or the read's timestamp attribute).
  input_specs, feature_map: the signature's inputs and the fields feeding
    them, as batch_predict checks them.
  """
  key_rule: keys.KeyRule
  input_specs: dict
  feature_map: dict = dataclasses.field(default_factory=dict)
  key_attribute: str | None = None
  timestamp_field: str | None = None
  max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES

  def __post_init__(self):
    if self.max_text_bytes < 1:
      raise ConfigError('max_text_bytes', 'must be at least 1')
    if self.key_attribute is not None and not self.key_attribute.strip():
      raise ConfigError('key_attribute', 'must name an attribute')

  def key_of(self, record, attributes):
    """(key, None) or (None, why not), as KeyRule.key_of."""
    if self.key_attribute is None:
      return self.key_rule.key_of(record)
    key, problem = keys.KeyRule(self.key_attribute).key_of(attributes or {})
    return key, problem and problem.replace('key field', 'key attribute', 1)


def payload_of(message):
  """(data bytes, attributes) of what ReadFromPubSub gives: a PubsubMessage
  (with_attributes=True) or the bare payload."""
  if isinstance(message, (bytes, bytearray)):
    return bytes(message), {}
  return message.data, dict(message.attributes or {})


@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _ParseMessage(beam.DoFn):

  def __init__(self, rules):
    self._rules = rules
    self._checks = feature_checks(rules.input_specs, rules.feature_map)
    self._records = sources.records_counter()
    self._valid = Metrics.counter(features.STAGE, 'valid')

  def process(self, message):
    self._records.inc()
    data, attributes = payload_of(message)
    record, problem = sources.parse_json_line(data)
    if problem:
      yield reject(None, sources.STAGE, problem[0], data, problem[1])
      return
    rules = self._rules
    key, problem = rules.key_of(record, attributes)
    if problem:
      yield reject(None, keys.STAGE, 'missing_key', record, problem)
      return
    problem = feature_problem(record, self._checks, rules.max_text_bytes)
    if problem:
      yield reject(key, features.STAGE, problem[0], record, problem[1])
      return
    if rules.timestamp_field is None:
      self._valid.inc()
      yield key, record
      return
    try:
      seconds = parse_timestamp(record.get(rules.timestamp_field))
    except BadTimestamp as e:
      yield reject(key, sources.STAGE, 'bad_timestamp', record,
                   f'field {rules.timestamp_field!r}: {e}')
      return
    self._valid.inc()
    yield TimestampedValue((key, record), seconds)


class ParseMessages(beam.PTransform):
  """Pub/Sub messages (bytes or PubsubMessage) -> Routed: (key, record) at
  its event time, and the dead letters of every message that cannot be
  predicted (reasons: unparseable, missing_key, bad_timestamp and the
  feature rule's)."""

  def __init__(self, rules):
    super().__init__()
    self._fn = _ParseMessage(rules)

  def expand(self, messages):
    return messages | RoutedParDo(self._fn)
