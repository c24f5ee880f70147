"""Small builders for comments as they reach the moderation rule."""
import json

from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.moderation import rule

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


def replay(comments, window_hours=24):
  """Decides parsed comments the plain way: the oracle the pipelines must
  agree with, for one or many commenters. Sorts by (event time,
  comment_id), decides each comment_id once with the rule's `decide`."""
  window = int(window_hours * rule.HOUR_MICROS)
  histories, seen, out = {}, set(), []
  keyed = sorted(
      comments,
      key=lambda c: (Timestamp.from_rfc3339(c['timestamp']).micros,
                     c['comment_id']))
  for c in keyed:
    if (c['commenter_id'], c['comment_id']) in seen:
      continue
    seen.add((c['commenter_id'], c['comment_id']))
    history = histories.setdefault(c['commenter_id'], {})
    out.append(rule.decide(
        c, Timestamp.from_rfc3339(c['timestamp']).micros, history, window))
  return out
