"""The moderation rule as a stateful, event-time DoFn (TestStream) and batch.

Streaming runs use the DirectRunner (FnApiRunner has no TestStream); every
scenario ends by advancing the watermark past the last timer (decisions and
state clean-up), then to infinity.
"""
import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from pipelines import summary
from harness.moderation_fixtures import HOUR
from harness.moderation_fixtures import T0
from harness.moderation_fixtures import brief
from harness.moderation_fixtures import comment
from harness.moderation_fixtures import keyed
from transforms.dead_letter import DEAD_LETTER
from transforms.moderation.rule import ModerateComments
from harness.moderation_fixtures import replay

DAY = 24 * HOUR


def _streaming_pipeline():
  options = PipelineOptions(runner='DirectRunner')
  options.view_as(StandardOptions).streaming = True
  return TestPipeline(options=options)


def _run_stream(steps, expected, expected_dead=(), lateness=HOUR,
                window_hours=24, end=60 * DAY):
  """Runs `steps`: ('add', [comments]) or ('watermark', seconds after T0).

  Checks the decisions (brief form) and dead letters ((comment_id, reason));
  returns the finished result for its metrics.
  """
  stream = TestStream()
  for kind, value in steps:
    if kind == 'add':
      stream.add_elements([keyed(c) for c in value])
    else:
      stream.advance_watermark_to(T0 + value)
  stream.advance_watermark_to(T0 + end)
  stream.advance_watermark_to_infinity()
  p = _streaming_pipeline()
  out = p | stream | ModerateComments(window_hours, lateness)
  assert_that(out.decisions | beam.Map(lambda d: brief([d])[0]),
              equal_to(expected), label='decisions')
  assert_that(out[DEAD_LETTER] | beam.Map(lambda d: (d['key'], d['reason'])),
              equal_to(list(expected_dead)), label='dead_letters')
  result = p.run()
  result.wait_until_finish()
  return result


def _run_batch(comments, window_hours=24):
  """The same transform over a bounded PCollection, on the FnApiRunner."""
  p = TestPipeline(options=PipelineOptions(runner='FnApiRunner'))
  out = (p | beam.Create([keyed(c) for c in comments]).with_output_types(
      beam.typehints.Tuple[str, beam.typehints.Any])
         | ModerateComments(window_hours, 0, bounded=True))
  return p, out


def test_out_of_order_arrival_within_lateness_is_decided_in_event_time_order():
  c1 = comment('c1', 'u', 1 * HOUR, 'Obama')
  c2 = comment('c2', 'u', 2 * HOUR, 'Obama')
  c3 = comment('c3', 'u', 3 * HOUR, 'Obama')
  # c3 and c2 arrive first; c1 arrives after the watermark passed its time,
  # but within the hour of allowed lateness.
  _run_stream(
      [('add', [c3, c2]), ('watermark', 1 * HOUR + 30 * 60), ('add', [c1])],
      [('c1', 'allow', ()), ('c2', 'reject', ('Obama',)),
       ('c3', 'reject', ('Obama',))])


def test_window_expires_at_exactly_24_hours():
  c1 = comment('c1', 'u', 0, 'Obama')
  c2 = comment('c2', 'u', DAY - 1, 'Obama')       # 1 s short of a day
  c3 = comment('c3', 'u', DAY, 'Obama')           # exactly a day after c1
  c4 = comment('c4', 'u', DAY + 1, 'Obama')       # 1 s after allowed c3
  c5 = comment('c5', 'u', 2 * DAY, 'Obama')       # exactly a day after c3
  _run_stream(
      [('add', [c5, c4, c3, c2, c1])],
      [('c1', 'allow', ()), ('c2', 'reject', ('Obama',)),
       ('c3', 'allow', ()), ('c4', 'reject', ('Obama',)),
       ('c5', 'allow', ())])


def test_window_hours_option_changes_the_window():
  c1 = comment('c1', 'u', 0, 'Obama')
  c2 = comment('c2', 'u', 2 * HOUR, 'Obama')
  _run_stream([('add', [c1, c2])],
              [('c1', 'allow', ()), ('c2', 'allow', ())], window_hours=2)


def test_multiple_entities_block_on_any_and_only_allowed_comments_open_windows():
  c1 = comment('c1', 'u', 0, 'Obama')
  c2 = comment('c2', 'u', 1 * HOUR, 'Merkel', 'Obama')   # blocked by Obama
  c3 = comment('c3', 'u', 2 * HOUR, 'Merkel')  # c2 was rejected: no window
  c4 = comment('c4', 'u', 3 * HOUR, 'Macron', 'Modi')
  c5 = comment('c5', 'u', 4 * HOUR, 'Modi')    # c4 allowed opened both
  c6 = comment('c6', 'u', 5 * HOUR, 'Merkel', 'Modi')
  other = comment('o1', 'v', 1 * HOUR, 'Obama')  # other commenters are apart
  _run_stream(
      [('add', [c6, c5, c4]), ('add', [c3, c2, other, c1])],
      [('c1', 'allow', ()), ('c2', 'reject', ('Obama',)),
       ('c3', 'allow', ()), ('c4', 'allow', ()), ('c5', 'reject', ('Modi',)),
       ('c6', 'reject', ('Merkel', 'Modi')), ('o1', 'allow', ())])


def test_same_time_is_ordered_by_comment_id():
  a = comment('a', 'u', HOUR, 'Obama')
  b = comment('b', 'u', HOUR, 'Obama')
  _run_stream([('add', [b]), ('add', [a])],
              [('a', 'allow', ()), ('b', 'reject', ('Obama',))])


def test_comments_without_tracked_entities_are_allowed_and_open_nothing():
  c1 = comment('c1', 'u', 0)
  c2 = comment('c2', 'u', 60)
  _run_stream([('add', [c1, c2])], [('c1', 'allow', ()), ('c2', 'allow', ())])


def test_duplicate_deliveries_are_decided_once():
  c1 = comment('c1', 'u', HOUR, 'Obama')
  c2 = comment('c2', 'u', 2 * HOUR, 'Obama')
  # Redelivered before the decision (buffered twice) and after it.
  _run_stream(
      [('add', [c1, c1, c2]), ('watermark', 4 * HOUR), ('add', [c1])],
      [('c1', 'allow', ()), ('c2', 'reject', ('Obama',))],
      expected_dead=[('c1', 'duplicate'), ('c1', 'duplicate')])


def _two_copies_of_c1():
  """Copies of comment c1 at 0 and 2h around c2 (1h), in arrival order (the
  later copy first), and the reference decisions: the earliest copy of c1
  is decided, so c2 is blocked by Obama."""
  arrivals = [comment('c1', 'u', 2 * HOUR, 'Merkel'),
              comment('c2', 'u', HOUR, 'Obama', 'Merkel'),
              comment('c1', 'u', 0, 'Obama')]
  oracle = brief(replay(arrivals))
  assert oracle == [('c1', 'allow', ()), ('c2', 'reject', ('Obama',))]
  return arrivals, oracle


def test_streaming_keeps_the_earliest_buffered_copy_of_a_comment_id():
  # As the batch replay does: of the copies of one comment_id waiting for
  # the same decision, the earliest in event time is decided.
  arrivals, oracle = _two_copies_of_c1()
  _run_stream([('add', arrivals)], oracle,
              expected_dead=[('c1', 'duplicate')], lateness=3 * HOUR)


def test_comments_later_than_allowed_lateness_go_to_dead_letter():
  c5 = comment('c5', 'u', 5 * HOUR, 'Obama')
  c4 = comment('c4', 'u', 4 * HOUR, 'Obama')  # after u's 5h was decided
  # Within lateness: the watermark is at 6.5h, 5.75h + 1h is still ahead.
  c6 = comment('c6', 'u', 5 * HOUR + 45 * 60, 'Obama')
  _run_stream(
      [('add', [c5]), ('watermark', 6 * HOUR + 30 * 60), ('add', [c4, c6])],
      [('c5', 'allow', ()), ('c6', 'reject', ('Obama',))],
      expected_dead=[('c4', 'late')])


def _random_comments(seed, users=6, per_user=25, entities=4, days=3):
  rng = random.Random(seed)
  out = []
  for u in range(users):
    for i in range(per_user):
      ids = rng.sample([f'E{k}' for k in range(entities)], rng.randint(0, 2))
      # Whole minutes so that ties in event time happen.
      seconds = rng.randrange(days * 24 * 60) * 60
      out.append(comment(f'c{u}-{i:03d}', f'u{u}', seconds, *ids))
  return out


def test_streaming_decisions_equal_batch_replay_decisions():
  comments = _random_comments(seed=4)
  oracle = brief(replay(comments))
  assert {d for _, d, _ in oracle} == {'allow', 'reject'}
  # Arrival order: shuffled within a 50-minute jitter of event time; the
  # watermark follows the arrivals 55 minutes behind, so nothing is late
  # with an hour of allowed lateness.
  rng = random.Random(7)
  arrival = sorted(
      comments, key=lambda c: _seconds(c) + rng.uniform(0, 50 * 60))
  steps, watermark = [], 0
  for i in range(0, len(arrival), 5):
    steps.append(('add', arrival[i:i + 5]))
    if arrival[i + 5:]:
      low = min(_seconds(c) for c in arrival[i + 5:]) - 5 * 60
      if low > watermark:
        watermark = low
        steps.append(('watermark', watermark))
  _run_stream(steps, oracle)

  p, out = _run_batch(comments)
  assert_that(out.decisions | beam.Map(lambda d: brief([d])[0]),
              equal_to(oracle))
  assert_that(out[DEAD_LETTER], equal_to([]), label='no_dead_letters')
  p.run().wait_until_finish()


def _seconds(c):
  from apache_beam.utils.timestamp import Timestamp
  return Timestamp.from_rfc3339(c['timestamp']).micros // 1_000_000 - T0


def test_batch_replay_orders_by_event_time_and_dedupes():
  c1 = comment('c1', 'u', 0, 'Obama')
  c2 = comment('c2', 'u', HOUR, 'Obama')
  p, out = _run_batch([c2, c1, c2])
  assert_that(out.decisions | beam.Map(lambda d: brief([d])[0]),
              equal_to([('c1', 'allow', ()), ('c2', 'reject', ('Obama',))]))
  assert_that(out[DEAD_LETTER] | beam.Map(lambda d: (d['key'], d['reason'])),
              equal_to([('c2', 'duplicate')]), label='dead')
  result = p.run()
  result.wait_until_finish()
  counters = summary.counters(result)
  assert counters['moderation'] == {'allowed': 1, 'rejected': 1}
  assert summary.dead_letters_by_reason(counters) == {'duplicate': 1}


def test_batch_replay_keeps_the_earliest_copy_of_a_comment_id():
  # Copies of one comment_id at different times: the earliest is decided
  # (as the reference replay does), whatever order they arrive in.
  arrivals, oracle = _two_copies_of_c1()
  p, out = _run_batch(arrivals)
  assert_that(out.decisions | beam.Map(lambda d: brief([d])[0]),
              equal_to(oracle))
  assert_that(out[DEAD_LETTER] | beam.Map(
      lambda d: (d['key'], d['reason'], 'Merkel' in d['raw'])),
              equal_to([('c1', 'duplicate', True)]), label='dead')
  p.run().wait_until_finish()


def test_decision_record_shape():
  decisions = replay([comment('c1', 'u', 0, 'Obama'),
                      comment('c2', 'u', 60, 'Obama')])
  assert decisions[1] == {
      'comment_id': 'c2', 'commenter_id': 'u',
      'timestamp': '2024-05-01T00:01:00Z', 'decision': 'reject',
      'entities': [{'name': 'Obama', 'canonical_id': 'Obama',
                    'type': 'PERSON'}],
      'blocked_by': ['Obama'],
      'reason': ('mentioned within 24h: Obama already in allowed comment c1 '
                 'at 2024-05-01T00:00:00Z'),
  }
