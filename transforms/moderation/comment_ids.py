"""One commenter per comment_id: a comment is decided once.

The rule (transforms.moderation.rule) keeps state per commenter, so it
catches a comment_id repeated by one commenter (a redelivery) but not the
same comment_id sent by two commenters, which it would decide twice. Here,
for a bounded input (batch replay), the commenter of a comment_id's first
comment in (event time, commenter_id) order owns it; comments of that id
from any other commenter are `duplicate` dead letters, the reason the rule
gives a repeated comment_id. The owner's copies go on, and the rule decides
the first of them as before.

Only comment_ids sent by more than one commenter (rare) reach the main path,
as a side input; every other comment passes untouched, timestamp and all.
A side input of the whole stream never completes, so streaming claims ids
in keyed state instead (comment_claims.py), with `duplicate` as its dead
letter too.
"""
import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject

STAGE = 'comment_ids'


class _FirstClaim(beam.CombineFn):
  """(event time micros, commenter_id) claims of one comment_id ->
  (earliest claim, whether several commenters claimed it). At most two
  commenters are remembered: a second one is all it takes."""

  def create_accumulator(self):
    return None, frozenset()

  def add_input(self, accumulator, claim):
    first, commenters = accumulator
    if len(commenters) < 2:
      commenters = commenters | {claim[1]}
    return (claim if first is None else min(first, claim)), commenters

  def merge_accumulators(self, accumulators):
    first, commenters = None, frozenset()
    for other_first, other in accumulators:
      if other_first is not None:
        first = other_first if first is None else min(first, other_first)
      merged = commenters | other
      commenters = (merged if len(merged) <= 2
                    else frozenset(sorted(merged)[:2]))
    return first, commenters

  def extract_output(self, accumulator):
    first, commenters = accumulator
    return first[1], len(commenters) > 1


def _claim(comment, t=beam.DoFn.TimestampParam):
  return comment['comment_id'], (t.micros, comment['commenter_id'])


class _KeepOwners(beam.DoFn):

  def __init__(self):
    self._refused = refused_counter()

  def process(self, comment, owners):
    owner = owners.get(comment['comment_id'])
    if owner is not None and owner != comment['commenter_id']:
      self._refused.inc()
      yield duplicate(comment, owner)
      return
    yield comment


def duplicate(comment, owner):
  """The dead letter of a comment whose comment_id `owner` owns."""
  return reject(comment['comment_id'], STAGE, 'duplicate', comment['raw'],
                f'comment_id already received from commenter {owner!r}')


def refused_counter():
  """Comments dead-lettered because another commenter owns their id."""
  return Metrics.counter(STAGE, 'claimed_by_another_commenter')


class OneCommenterPerId(beam.PTransform):
  """Timestamped comments (bounded) -> Routed(the comments whose
  comment_id their commenter owns, duplicates)."""

  def expand(self, comments):
    owners = (comments
              | 'Claims' >> beam.Map(_claim)
              | 'First claim' >> beam.CombinePerKey(_FirstClaim())
              | 'Shared ids' >> beam.Filter(lambda kv: kv[1][1])
              | 'Owners' >> beam.Map(lambda kv: (kv[0], kv[1][0])))
    return comments | 'Keep owners' >> RoutedParDo(
        _KeepOwners(), beam.pvalue.AsDict(owners))
