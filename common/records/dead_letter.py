"""The dead-letter record: one per rejected input, in every job.

  {"key": str|None, "stage": str, "reason": str, "raw": <original input>,
   "error": str (optional, human detail),
   "raw_encoding": "base64" (only when raw is not text, see below)}

`raw` is the complete original input, so a dead letter can be fixed and
replayed. Input bytes that are not UTF-8 text (or text holding a lone
surrogate, which no UTF-8 writer accepts) cannot be JSON text as they are:
`raw` is then their base64 and `raw_encoding` says so, so a replay gets the
exact bytes back. A table of dead letters holds `raw` as JSON text (no fixed schema
describes every input) and the time each was written, which it is
partitioned on: dead letters carry no other time of their own.
"""
import base64
import json

from common.json_safe import json_safe
from common.unicode_text import has_lone_surrogate
from common.schema import Field
from common.schema import Shape

SHAPE = Shape('dead_letter', (
    Field('key', 'string'),
    Field('stage', 'string', required=True),
    Field('reason', 'string', required=True),
    Field('raw', 'json', description='the complete original input, JSON'),
    Field('error', 'string'),
    Field('raw_encoding', 'string',
          description='"base64" when raw is the base64 of bytes that are '
          'not UTF-8 text; absent when raw is the input itself'),
))
BASE64 = 'base64'
TABLE_PARTITION = 'dead_lettered_at'
TABLE_SHAPE = SHAPE.plus(Field(TABLE_PARTITION, 'timestamp', required=True),
                         partition=TABLE_PARTITION)


def record(key, stage, reason, raw, error=None):
  """One dead letter; `raw` is made JSON-safe here, once (bytes that are
  not text: base64, flagged)."""
  raw, encoding = as_raw(raw)
  out = {
      'key': None if key is None else str(key),
      'stage': stage,
      'reason': reason,
      'raw': raw,
  }
  if error:
    out['error'] = str(error)
  if encoding:
    out['raw_encoding'] = encoding
  return out


def as_raw(raw):
  """(JSON-safe raw, None), or (base64 text, BASE64) for what is not text:
  a dead letter's `raw` and `raw_encoding` for an input."""
  if isinstance(raw, (bytes, bytearray, memoryview)):
    data = bytes(raw)
    try:
      return data.decode('utf-8'), None
    except UnicodeDecodeError:
      return base64.b64encode(data).decode('ascii'), BASE64
  raw = json_safe(raw)
  if has_lone_surrogate(raw):
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    return base64.b64encode(text.encode('utf-8', 'surrogatepass')).decode(
        'ascii'), BASE64
  return raw, None


def table_row(dead_letter, written_at):
  """A dead letter as a row of TABLE_SHAPE."""
  return {
      'key': dead_letter.get('key'),
      'stage': dead_letter['stage'],
      'reason': dead_letter['reason'],
      'raw': json.dumps(dead_letter.get('raw'), ensure_ascii=False,
                        sort_keys=True),
      'error': dead_letter.get('error'),
      'raw_encoding': dead_letter.get('raw_encoding'),
      TABLE_PARTITION: written_at,
  }
