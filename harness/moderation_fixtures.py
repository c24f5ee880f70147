"""Small builders for comments as they reach the moderation rule."""
import json

from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

# 2024-05-01T00:00:00Z: a fixed origin keeps tests reproducible.
T0 = 1714521600
HOUR = 3600


def comment(cid, user, seconds, *ids, text=None):
  """A parsed comment at T0 + seconds mentioning canonical ids `ids`."""
  ts = Timestamp(T0 + seconds).to_rfc3339()
  raw = json.dumps({'comment_id': cid, 'commenter_id': user,
                    'text': text or ' and '.join(ids) or 'hello',
                    'timestamp': ts})
  return {
      'comment_id': cid, 'commenter_id': user, 'text': text or raw,
      'timestamp': ts, 'raw': raw,
      'entities': [{'name': i, 'canonical_id': i, 'type': 'PERSON'}
                   for i in ids],
  }


def keyed(c):
  """The element the stateful rule consumes: (commenter_id, comment)."""
  return TimestampedValue((c['commenter_id'], c),
                          Timestamp.from_rfc3339(c['timestamp']))


def brief(decisions):
  """(comment_id, decision, blocked_by) triples: what the contract pins."""
  return sorted((d['comment_id'], d['decision'], tuple(d['blocked_by']))
                for d in decisions)
