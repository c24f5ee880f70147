"""The moderation decision record: one per decided comment.

  {"comment_id", "commenter_id", "timestamp": event time ISO-8601 UTC,
   "decision": "allow" | "reject",
   "entities": [{"name", "canonical_id", "type"}],
   "blocked_by": [canonical ids], "reason": str}

A table of decisions is partitioned on the comment's event time.
"""
from common.schema import Field
from common.schema import Shape

ALLOW = 'allow'
REJECT = 'reject'
PARTITION = 'timestamp'
SHAPE = Shape('decision', (
    Field('comment_id', 'string', required=True),
    Field('commenter_id', 'string', required=True),
    Field(PARTITION, 'timestamp', required=True,
          description='event time of the comment'),
    Field('decision', 'string', required=True,
          description='allow or reject'),
    Field('entities', 'record', depth=1, fields=(
        Field('name', 'string'), Field('canonical_id', 'string'),
        Field('type', 'string'))),
    Field('blocked_by', 'string', depth=1),
    Field('reason', 'string'),
), partition=PARTITION, key_field='comment_id')


def record(comment, decision, blocked_by, reason):
  """The decision on a parsed comment (transforms.moderation.comments)."""
  return {
      'comment_id': comment['comment_id'],
      'commenter_id': comment['commenter_id'],
      'timestamp': comment['timestamp'],
      'decision': decision,
      'entities': list(comment.get('entities', ())),
      'blocked_by': blocked_by,
      'reason': reason,
  }
