"""The dead-letter record: one per rejected input, in every job.

  {"key": str|None, "stage": str, "reason": str, "raw": <original input>,
   "error": str (optional, human detail)}

`raw` is the complete original input, so a dead letter can be fixed and
replayed. A table of dead letters holds `raw` as JSON text (no fixed schema
describes every input) and the time each was written, which it is
partitioned on: dead letters carry no other time of their own.
"""
import json

from common.json_safe import json_safe
from common.schema import Field
from common.schema import Shape

SHAPE = Shape('dead_letter', (
    Field('key', 'string'),
    Field('stage', 'string', required=True),
    Field('reason', 'string', required=True),
    Field('raw', 'json', description='the complete original input, JSON'),
    Field('error', 'string'),
))
TABLE_PARTITION = 'dead_lettered_at'
TABLE_SHAPE = SHAPE.plus(Field(TABLE_PARTITION, 'timestamp', required=True),
                         partition=TABLE_PARTITION)


def record(key, stage, reason, raw, error=None):
  """One dead letter; `raw` is made JSON-safe here, once."""
  out = {
      'key': None if key is None else str(key),
      'stage': stage,
      'reason': reason,
      'raw': json_safe(raw),
  }
  if error:
    out['error'] = str(error)
  return out


def table_row(dead_letter, written_at):
  """A dead letter as a row of TABLE_SHAPE."""
  return {
      'key': dead_letter.get('key'),
      'stage': dead_letter['stage'],
      'reason': dead_letter['reason'],
      'raw': json.dumps(dead_letter.get('raw'), ensure_ascii=False,
                        sort_keys=True),
      'error': dead_letter.get('error'),
      TABLE_PARTITION: written_at,
  }
