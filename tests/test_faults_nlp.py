"""Cloud Natural Language failing under the moderation job: outages,
quota bursts, slow and hung answers, through the real client against the
gRPC stand-in (harness/language.py).

Retried with backoff within a deadline, then dead-lettered with the reason;
a per-worker rate limit keeps a burst of comments from becoming a burst of
calls; every comment comes out once, annotated or dead-lettered.
"""
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from harness.fault_figures import record
from harness.language import BOOK_SENTENCE
from harness.language import language_server  # noqa: F401  pylint: disable=unused-import
from harness.moderation_fixtures import comment
from harness.moderation_fixtures import keyed
from transforms.dead_letter import DEAD_LETTER
from transforms.moderation.entities import CloudNlEntityFn
from transforms.moderation import rate_limit
from transforms.moderation.entities import ExtractEntities

OBAMA = 'https://en.wikipedia.org/wiki/Barack_Obama'


def _fn(endpoint, **kwargs):
  kwargs.setdefault('initial_backoff_s', 0.05)
  fn = CloudNlEntityFn(('PERSON',), endpoint=endpoint, insecure=True,
                       **kwargs)
  fn.setup()
  return fn


def _annotate(endpoint, comments, expect_ids, check_dead, **backend):
  """Runs ExtractEntities over `comments`: the annotated comment ids must
  be `expect_ids`; `check_dead` gets the dead letters' (comment id, reason,
  error)."""
  p = TestPipeline(options=PipelineOptions(runner='FnApiRunner'))
  out = (p | beam.Create([keyed(c) for c in comments])
         | ExtractEntities('nlp', ['PERSON'], endpoint=endpoint,
                           insecure=True, **backend))
  assert_that(out.comments | beam.Map(lambda kv: kv[1]['comment_id']),
              equal_to(expect_ids), label='annotated')
  assert_that(out[DEAD_LETTER] | beam.Map(
      lambda d: (d['key'], d['reason'], d['error'])), check_dead,
              label='dead letters')
  p.run().wait_until_finish()


def _busiest_second(times):
  """Most calls that started within any one second."""
  times = sorted(times)
  return max((sum(1 for t in times[i:] if t < start + 1.0)
              for i, start in enumerate(times)), default=0)


def test_an_outage_shorter_than_the_deadline_loses_nothing(language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  comments = [comment(f'c{i}', 'u', i, text=BOOK_SENTENCE) for i in range(30)]
  stand_in.fail_for('UNAVAILABLE', 1.0)
  _annotate(endpoint, comments, [c['comment_id'] for c in comments],
            equal_to([]), initial_backoff_s=0.2, max_attempts=8,
            deadline_s=20.0)
  assert len(stand_in.call_times) > len(comments)  # the outage was retried
  record('Cloud NL UNAVAILABLE for 1 s (deadline 20 s)', {
      'inputs': len(comments), 'outputs': len(comments),
      'calls': len(stand_in.call_times)})


def test_a_longer_outage_dead_letters_every_comment_with_its_reason(
    language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  comments = [comment(f'c{i}', 'u', i, text=BOOK_SENTENCE) for i in range(6)]
  stand_in.fail_for('UNAVAILABLE', 60.0)
  ids = sorted(c['comment_id'] for c in comments)

  def every_one_with_its_reason(dead):
    assert sorted(key for key, _, _ in dead) == ids
    for _, reason, error in dead:
      assert reason == 'api_failure'
      assert '503 scripted UNAVAILABLE (attempt' in error, error

  started = time.monotonic()
  _annotate(endpoint, comments, [], every_one_with_its_reason,
            initial_backoff_s=0.2, max_attempts=50, timeout_s=0.5,
            deadline_s=2.0)
  assert time.monotonic() - started < 20
  # Bounded by the deadline (2 s of 0.2, 0.4, 0.8 s backoffs), not by the
  # 50 attempts allowed.
  assert len(stand_in.call_times) <= 4 * len(comments)
  record('Cloud NL UNAVAILABLE past the deadline (2 s)', {
      'inputs': len(comments), 'dead_lettered': len(comments),
      'calls': len(stand_in.call_times)})


def test_hung_answers_time_out_and_slow_ones_are_waited_for(language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  stand_in.slow_s = 0.6
  [hung] = _fn(endpoint, timeout_s=0.2, max_attempts=10,
               deadline_s=1.0).annotate([BOOK_SENTENCE])
  assert 'DEADLINE_EXCEEDED' in str(hung.grpc_status_code)
  assert 2 <= stand_in.calls[BOOK_SENTENCE] <= 4  # bounded by the deadline
  [slow] = _fn(endpoint, timeout_s=2.0).annotate([BOOK_SENTENCE])
  assert slow[0]['canonical_id'] == OBAMA


def test_the_rate_limit_turns_a_burst_of_comments_into_a_steady_rate(
    language_server):
  stand_in, endpoint = language_server
  texts = [f'{BOOK_SENTENCE} {i}' for i in range(45)]

  # Without a limit, 45 comments at once are ~45 calls in one second: the
  # API's quota of 15 a second answers most with RESOURCE_EXHAUSTED.
  stand_in.reset()
  stand_in.quota_per_s = 15
  results = _fn(endpoint, concurrency=16, max_attempts=1).annotate(texts)
  assert sum(isinstance(r, Exception) for r in results) > 20

  stand_in.reset()
  stand_in.quota_per_s = 15
  started = time.monotonic()
  results = _fn(endpoint, concurrency=16, max_attempts=1,
                rate_limit_per_s=12).annotate(texts)
  assert not [r for r in results if isinstance(r, Exception)]
  assert time.monotonic() - started >= (45 - 12) / 12 * 0.9
  assert _busiest_second(stand_in.call_times) <= 15


def test_the_bucket_serves_callers_in_turn_at_the_rate():
  now = [0.0]
  waits = []

  def sleep(seconds):
    waits.append(seconds)

  limiter = rate_limit.RateLimiter(4, clock=lambda: now[0], sleep=sleep)
  assert [limiter.acquire() for _ in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
  now[0] = 10.0  # long idle: the bucket refills to its burst, no more
  assert [limiter.acquire() for _ in range(2)] == [0.0, 0.25]
  assert waits == [0.25, 0.5, 0.75, 1.0, 0.25] and limiter.waits == 5
