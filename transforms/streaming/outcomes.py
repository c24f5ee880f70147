"""Which published record is the outcome of which prediction message.

Every message has exactly one outcome: its prediction (keyed by the client
key) or its dead letter (which carries the message, or the record parsed
from it, as `raw`). A local streaming run acknowledges a message once one
of its outcomes is published (pipelines/local_acks.py), so `message_keys`
and `outcome_key` must agree: a message's keys are its raw text, its parsed
record and, when it has a usable key, ('key', key).
"""
from common.records.dead_letter import as_raw
from transforms.io import sources
from transforms.io.pubsub import json_object
from transforms.io.pubsub import raw_key
from transforms.streaming.messages import MessageRules


class StreamOutcomes:
  """message_keys / outcome_key for pipelines.local_acks.AckOnOutcome."""

  def __init__(self, rules: MessageRules):
    self._rules = rules

  @property
  def uses_attributes(self):
    return self._rules.key_attribute is not None

  def message_keys(self, data, attributes=None):
    """The keys a message's outcome can come back under."""
    data = bytes(data)
    out = [raw_key(as_raw(data)[0])]
    record, problem = sources.parse_json_line(data)
    if problem:
      return out
    out.append(raw_key(as_raw(record)[0]))
    key, problem = self._rules.key_of(record, attributes)
    if key is not None:
      out.append(('key', key))
    return out

  @staticmethod
  def outcome_key(payload):
    """The key of a published prediction or dead letter; None for anything
    else (a model event, a prediction-log row)."""
    record = json_object(payload)
    if record is None:
      return None
    if 'predictions' in record and 'key' in record:
      return ('key', record['key'])
    if 'reason' in record and 'raw' in record:
      return raw_key(record['raw'])
    return None
