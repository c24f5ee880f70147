"""Per-key state of the moderation DoFn stays bounded on an unbounded stream.

A runner's state is not observable from a pipeline, so this drives the real
DoFn the way a runner does (harness.keyed_state) and looks at what each
key keeps.
"""
import random

from apache_beam.utils.timestamp import Timestamp

from harness.keyed_state import KeyedDriver
from harness.moderation_fixtures import HOUR
from harness.moderation_fixtures import T0
from harness.moderation_fixtures import comment
from transforms.moderation.rule import ModerateComments
from harness.moderation_fixtures import replay

DAY = 24 * HOUR


class _Driver(KeyedDriver):
  """KeyedDriver fed comments, with the watermark in seconds after T0."""

  def add(self, c):
    super().add(c['commenter_id'], c, Timestamp.from_rfc3339(c['timestamp']))

  def advance(self, seconds_after_t0):
    super().advance(T0 * 1_000_000 + round(seconds_after_t0 * 1_000_000))


def _fn(lateness=HOUR, interval=1.0):
  return ModerateComments(24, lateness, decision_interval_seconds=interval)._fn


def test_live_state_follows_active_commenters_only():
  rng = random.Random(3)
  # 300 commenters, each active for one burst of ~6 hours somewhere in 30
  # days: an unbounded stream in miniature.
  comments = []
  for u in range(300):
    start = rng.randrange(30 * DAY)
    for i in range(4):
      ids = rng.sample(['A', 'B', 'C'], rng.randint(1, 2))
      comments.append(comment(f'c{u}-{i}', f'u{u}', start + i * 5400, *ids))
  comments.sort(key=lambda c: c['timestamp'])
  by_hour = {}
  for c in comments:
    by_hour.setdefault(_seconds(c) // HOUR, []).append(c)
  driver = _Driver(_fn())
  newest, peak = {}, 0
  for hour in range(0, 32 * 24):
    for c in by_hour.get(hour, ()):
      driver.add(c)
      newest[c['commenter_id']] = _seconds(c)
    driver.advance(hour * HOUR)
    live = driver.live_keys()
    # A key lives from its first comment until its newest mention has left
    # the window (plus the lateness): never longer.
    for key in live:
      assert hour * HOUR < newest[key] + DAY + HOUR, key
    peak = max(peak, len(live))
  driver.advance(40 * DAY)
  assert driver.live_keys() == set()
  assert peak < 60  # ~300 bursts over 30 days, about 10 alive a day
  assert sorted(driver.decisions, key=lambda d: d['comment_id']) == sorted(
      replay(comments), key=lambda d: d['comment_id'])


def test_late_comment_is_caught_after_its_key_was_cleared():
  driver = _Driver(_fn())
  driver.add(comment('a1', 'alice', HOUR, 'Obama'))
  driver.add(comment('b1', 'bob', HOUR, 'Obama'))
  driver.advance(3 * DAY)
  assert driver.live_keys() == set()
  # bob's 2h comment would have been rejected (his 1h one was allowed), but
  # his state is gone: the watermark (at least the last fired timer) shows it
  # is days late, so it is dead-lettered instead of wrongly allowed.
  driver.add(comment('b2', 'bob', 2 * HOUR, 'Obama'))
  assert [(d['key'], d['reason']) for d in driver.dead] == [('b2', 'late')]
  assert [d['comment_id'] for d in driver.decisions] == ['a1', 'b1']


def _busy_stream(interval):
  """One commenter, a comment every 0.1 s for 20 s, the watermark 2 s
  behind event time: returns (driver, comments) after the stream ends."""
  rng = random.Random(5)
  comments = [comment(f'c{i:03d}', 'u', i / 10, *rng.sample('ABC', 1))
              for i in range(200)]
  driver = _Driver(_fn(lateness=2, interval=interval))
  for i, c in enumerate(comments):
    driver.add(c)
    driver.advance(i / 10 - 2)
  driver.advance(3 * DAY)
  return driver, comments


def test_decision_interval_decides_the_same_with_fewer_timer_firings():
  by_id = lambda d: d['comment_id']
  per_time, comments = _busy_stream(interval=0)
  gridded, _ = _busy_stream(interval=1)
  expected = sorted(replay(comments), key=by_id)
  assert sorted(per_time.decisions, key=by_id) == expected
  assert sorted(gridded.decisions, key=by_id) == expected
  assert per_time.dead == gridded.dead == []
  # Per distinct time: one firing per comment (+ the pruning one); on a 1 s
  # grid: one per second of the stream (+ pruning).
  assert per_time.firings >= 200
  assert gridded.firings <= 22
  assert per_time.live_keys() == gridded.live_keys() == set()


def test_decision_interval_keeps_the_lateness_rule():
  driver = _Driver(_fn(lateness=2, interval=1))
  driver.add(comment('a', 'u', 10.2, 'A'))
  driver.advance(12.5)  # the timer is on the grid: 12.2 -> 13
  assert driver.decisions == []
  driver.add(comment('b', 'u', 10.9, 'A'))  # within lateness: still decided
  driver.advance(13)
  assert [(d['comment_id'], d['decision']) for d in driver.decisions] == [
      ('a', 'allow'), ('b', 'reject')]
  # The 13 s firing decided everything up to 11 s: 10.95 is now late.
  driver.add(comment('c', 'u', 10.95, 'B'))
  assert [(d['key'], d['reason']) for d in driver.dead] == [('c', 'late')]


def _seconds(c):
  return Timestamp.from_rfc3339(c['timestamp']).micros // 1_000_000 - T0
