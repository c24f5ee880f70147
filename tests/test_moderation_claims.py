"""Streaming: one comment_id sent by two commenters is decided once (#23).

TestStream through the claim (comment_claims.ClaimCommentIds) and the rule,
as the streaming job composes them: the first commenter a comment_id
arrives from owns it, another commenter's copy is a `duplicate` dead letter
and touches nothing of its commenter's history, the owner's own copies are
the rule's to sort out, and a claim is forgotten once the watermark has
passed it by the window plus the allowed lateness. Every scenario counts
inputs = decisions + dead letters.
"""
import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from harness.moderation_fixtures import HOUR
from harness.moderation_fixtures import T0
from harness.moderation_fixtures import comment
from transforms.dead_letter import DEAD_LETTER
from transforms.moderation import comment_claims
from transforms.moderation.comments import key_by_commenter
from transforms.moderation.rule import ModerateComments

DAY = 24 * HOUR


def _run(batches, expected, expected_dead, watermarks=()):
  """Feeds `batches` of comments in arrival order (each batch one TestStream
  event; `watermarks` maps a batch index to the watermark, in seconds after
  T0, set before it). Checks decisions as (comment_id, commenter, decision)
  and dead letters as (comment_id, stage, reason, commenter of the raw
  message)."""
  stream = TestStream()
  for i, batch in enumerate(batches):
    if i in dict(watermarks):
      stream.advance_watermark_to(T0 + dict(watermarks)[i])
    stream.add_elements([TimestampedValue(
        c, Timestamp.from_rfc3339(c['timestamp'])) for c in batch])
  stream.advance_watermark_to(T0 + 60 * DAY)
  stream.advance_watermark_to_infinity()
  options = PipelineOptions(runner='DirectRunner')
  options.view_as(StandardOptions).streaming = True
  p = TestPipeline(options=options)
  owned = p | stream | comment_claims.ClaimCommentIds(24, HOUR)
  moderated = (owned.main | beam.Map(key_by_commenter).with_output_types(
      beam.typehints.Tuple[str, beam.typehints.Any])
               | ModerateComments(24, HOUR))
  dead = (owned.dead_letter, moderated[DEAD_LETTER]) | beam.Flatten()
  assert_that(moderated.decisions | beam.Map(
      lambda d: (d['comment_id'], d['commenter_id'], d['decision'])),
              equal_to(expected), label='decisions')
  assert_that(dead | beam.Map(lambda d: (
      d['key'], d['stage'], d['reason'], _commenter_of(d['raw']))),
              equal_to(expected_dead), label='dead_letters')
  p.run().wait_until_finish()
  assert sum(len(b) for b in batches) == len(expected) + len(expected_dead)


def _commenter_of(raw):
  return json.loads(raw)['commenter_id']


def _shared_id_scenario(first, second):
  """c1 from `first` then from `second` (an hour earlier in event time: the
  owner is the first to arrive, not the earliest), then each commenter
  mentions Obama again: only the owner's c1 opened a window."""
  copies = {'alice': comment('c1', 'alice', 2 * HOUR, 'Obama'),
            'bob': comment('c1', 'bob', HOUR, 'Obama')}
  later = [comment('a2', 'alice', 3 * HOUR, 'Obama'),
           comment('b2', 'bob', 3 * HOUR, 'Obama')]
  loser = 'bob' if first == 'alice' else 'alice'
  _run([[copies[first]], [copies[second]], later],
       [('c1', first, 'allow'),
        (f'{first[0]}2', first, 'reject'),
        (f'{loser[0]}2', loser, 'allow')],
       [('c1', 'comment_ids', 'duplicate', second)])


def test_first_commenter_to_arrive_owns_the_comment_id():
  _shared_id_scenario('alice', 'bob')


def test_the_other_arrival_order_gives_the_other_owner():
  _shared_id_scenario('bob', 'alice')


def test_copies_in_one_bundle_are_claimed_in_arrival_order():
  _run([[comment('c1', 'bob', HOUR, 'Obama'),
         comment('c1', 'alice', 0, 'Obama'),
         comment('c2', 'alice', 0, 'Obama')]],
       [('c1', 'bob', 'allow'), ('c2', 'alice', 'allow')],
       [('c1', 'comment_ids', 'duplicate', 'alice')])


def test_the_owners_own_copies_are_the_rules_duplicates():
  owner_copy = comment('c1', 'alice', HOUR, 'Obama')
  _run([[owner_copy, comment('c1', 'bob', HOUR, 'Obama'), owner_copy]],
       [('c1', 'alice', 'allow')],
       [('c1', 'comment_ids', 'duplicate', 'bob'),
        ('c1', 'moderate', 'duplicate', 'alice')])


def test_a_claim_is_forgotten_after_the_window_and_the_lateness():
  # alice's claim at 0 is kept for a day plus the hour of lateness: bob's
  # copy at 24h (watermark 23h) is refused; once the watermark has passed
  # 25h the claim is gone and bob's next copy is a comment of his own.
  _run([[comment('c1', 'alice', 0, 'Obama')],
        [comment('c1', 'bob', DAY, 'Obama')],
        [comment('c1', 'bob', DAY + 2 * HOUR, 'Merkel'),
         comment('c1', 'carol', DAY + 2 * HOUR, 'Merkel')]],
       [('c1', 'alice', 'allow'), ('c1', 'bob', 'allow')],
       [('c1', 'comment_ids', 'duplicate', 'bob'),
        ('c1', 'comment_ids', 'duplicate', 'carol')],
       watermarks=[(1, DAY - HOUR), (2, DAY + HOUR + 1)])


def test_shards_are_stable_and_spread():
  # The same in every process (Python's str hash is salted per process).
  assert [comment_claims.shard_of(i) for i in ('c00000', 'comment-1', 'x')] == [
      15, 13, 3]
  ids = [f'c{i:05d}' for i in range(1600)]
  shards = [comment_claims.shard_of(i) for i in ids]
  assert set(shards) == set(range(comment_claims.SHARDS))
  assert max(shards.count(s) for s in set(shards)) < 2 * 1600 / len(set(shards))


def test_claims_merged_keep_the_earlier_claim_of_an_id():
  claims = comment_claims._Claims()  # pylint: disable=protected-access
  first = claims.add_input(claims.create_accumulator(), ('c1', 20, 'bob'))
  first = claims.add_input(first, ('c1', 10, 'alice'))  # held: bob's stays
  second = claims.add_input(claims.create_accumulator(), ('c1', 5, 'carol'))
  second = claims.add_input(second, ('c2', 7, 'dan'))
  merged = claims.merge_accumulators([first, second])
  assert claims.extract_output(merged) == {'c1': (5, 'carol'),
                                           'c2': (7, 'dan')}
  assert second == {'c1': (5, 'carol'), 'c2': (7, 'dan')}  # left as it was
  assert claims.merge_accumulators([]) == {}
