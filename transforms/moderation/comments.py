"""Parses and validates comment messages at the edge of the moderation pipeline.

A comment is one JSON object per message or line:
  {"comment_id", "commenter_id", "text", "timestamp"}
with the timestamp as ISO-8601 with an offset ("2024-05-01T12:00:00+02:00",
"...Z") or epoch seconds. Everything downstream relies on a comment being
well formed, so every defect is found here, once, and the complete original
message goes to the dead letter with a reason. A message that is not UTF-8
text, or whose JSON holds a lone surrogate ("\\ud800", which no output could
carry), is `invalid_text`; its bytes are kept (base64 where they are not
text: common/records/dead_letter.py) so that it can be replayed exactly.

Time is parsed once here and carried as the element's Beam timestamp (event
time), so the stateful rule downstream orders comments by when they were
written, not by when they arrived.
"""
import json

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from common.config_error import ConfigError
from common.event_time import BadTimestamp
from common.event_time import parse_timestamp
from common.unicode_text import has_lone_surrogate
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject

STAGE = 'parse'
METRICS_NAMESPACE = 'moderation'
REQUIRED_FIELDS = ('comment_id', 'commenter_id', 'text', 'timestamp')
DEFAULT_MAX_TEXT_CHARS = 10_000

def _as_id(value):
  """Ids may be JSON strings or integers; both become non-empty strings."""
  if isinstance(value, bool):
    return None
  if isinstance(value, int):
    return str(value)
  if isinstance(value, str) and value.strip():
    return value.strip()
  return None


class ParseComments(beam.DoFn):
  """bytes|str message -> TimestampedValue(comment dict) | dead letter.

  The comment dict carries `raw` (the complete original message) so that later
  stages (API failure, lateness) can still dead-letter the original.

  `timestamp_optional`: in streaming, a message without a `timestamp` takes
  its element timestamp (the Pub/Sub publish time, or the value of
  --timestamp_attribute); in batch replay there is no such fallback, so a
  missing timestamp is a dead letter.
  """

  def __init__(self, max_text_chars=DEFAULT_MAX_TEXT_CHARS,
               timestamp_optional=False):
    if max_text_chars <= 0:
      raise ConfigError('max_text_chars', 'must be positive')
    self._max_text_chars = max_text_chars
    self._timestamp_optional = timestamp_optional
    self._comments = Metrics.counter(METRICS_NAMESPACE, 'comments')

  def process(self, message, element_ts=beam.DoFn.TimestampParam):
    self._comments.inc()
    raw = message
    if isinstance(message, (bytes, bytearray)):
      try:
        raw = bytes(message).decode('utf-8')
      except UnicodeDecodeError as e:
        yield reject(None, STAGE, 'invalid_text', message,
                     f'not UTF-8 text: {e}')
        return
    try:
      data = json.loads(raw)
    except ValueError as e:
      yield reject(None, STAGE, 'unparseable_json', raw, e)
      return
    if not isinstance(data, dict):
      yield reject(None, STAGE, 'unparseable_json', raw, 'not a JSON object')
      return
    if '\\u' in raw and has_lone_surrogate(data):
      yield reject(None, STAGE, 'invalid_text', raw,
                   'a string holds a lone surrogate (not Unicode text)')
      return
    required = [f for f in REQUIRED_FIELDS
                if not (f == 'timestamp' and self._timestamp_optional)]
    missing = [f for f in required if data.get(f) is None]
    if missing:
      yield reject(data.get('comment_id'), STAGE, 'missing_field', raw,
                   f'missing: {", ".join(missing)}')
      return
    comment_id = _as_id(data['comment_id'])
    commenter_id = _as_id(data['commenter_id'])
    if comment_id is None or commenter_id is None:
      yield reject(data.get('comment_id'), STAGE, 'bad_field', raw,
                   'comment_id and commenter_id must be non-empty strings '
                   'or integers')
      return
    text = data['text']
    if not isinstance(text, str):
      yield reject(comment_id, STAGE, 'bad_field', raw, 'text must be a string')
      return
    if not text.strip():
      yield reject(comment_id, STAGE, 'empty_text', raw)
      return
    if len(text) > self._max_text_chars:
      yield reject(comment_id, STAGE, 'oversized_text', raw,
                   f'{len(text)} characters > {self._max_text_chars}')
      return
    if data.get('timestamp') is None:
      seconds = float(element_ts.micros) / 1e6
    else:
      try:
        seconds = parse_timestamp(data['timestamp'])
      except BadTimestamp as e:
        yield reject(comment_id, STAGE, 'bad_timestamp', raw, e)
        return
    # Round to microseconds once, so the Beam timestamp and the written
    # timestamp are the same instant everywhere downstream.
    ts = Timestamp(micros=round(seconds * 1e6))
    comment = {
        'comment_id': comment_id,
        'commenter_id': commenter_id,
        'text': text,
        'timestamp': ts.to_rfc3339(),
        'raw': raw,
    }
    yield TimestampedValue(comment, ts)


class ReadComments(beam.PTransform):
  """Parses messages into timestamped comments, keyed by commenter_id.

  Returns a DoOutputsTuple with `comments` ((commenter_id, comment) pairs) and
  `dead_letter`.
  """

  def __init__(self, max_text_chars=DEFAULT_MAX_TEXT_CHARS,
               timestamp_optional=False):
    super().__init__()
    self._parse = ParseComments(max_text_chars, timestamp_optional)

  def expand(self, messages):
    return (
        messages
        | 'Parse' >> beam.ParDo(self._parse).with_outputs(
            DEAD_LETTER, main='comments'))


def key_by_commenter(comment):
  """(commenter_id, comment): the rule's state is per commenter."""
  return comment['commenter_id'], comment
