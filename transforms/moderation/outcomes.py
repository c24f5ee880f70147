"""Which published record is the outcome of which comment message.

Every comment message has exactly one outcome: its decision (keyed by
comment_id) or its dead letter (which carries the complete message as
`raw`). A local streaming run acknowledges a message once one of its
outcomes is published (pipelines/local_acks.py), so these two functions
must agree: a message's keys are its raw text and, when it has one, its
comment_id as the parser normalises it.
"""
import json

from common.records import dead_letter
from transforms.io.pubsub import json_object
from transforms.io.pubsub import raw_key as _raw_key
from transforms.moderation import comments


def message_keys(data):
  """The keys a message's outcome can come back under."""
  try:
    text = bytes(data).decode('utf-8')
  except UnicodeDecodeError:
    return [_raw_key(dead_letter.as_raw(bytes(data))[0])]
  keys = [_raw_key(text)]
  try:
    record = json.loads(text)
  except ValueError:
    return keys
  if isinstance(record, dict):
    comment_id = comments._as_id(record.get('comment_id'))  # pylint: disable=protected-access
    if comment_id is not None:
      keys.append(('id', comment_id))
  return keys


def outcome_key(payload):
  """The key of a published decision or dead letter; None for anything
  else."""
  record = json_object(payload)
  if record is None:
    return None
  if 'decision' in record and 'comment_id' in record:
    return ('id', record['comment_id'])
  if 'raw' in record:
    return _raw_key(record['raw'])
  return None
