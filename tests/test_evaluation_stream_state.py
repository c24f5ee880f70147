"""The streaming join's state stays bounded by the label lateness on a long
stream, its counters say what it holds, and driving it the way a runner
does (harness.evaluation_stream, as the state benchmark does) gives what the
pipeline gives on the DirectRunner."""
import datetime
import json

import pytest

from harness.evaluation_stream import LABEL
from harness.evaluation_stream import PREDICTION
from harness.evaluation_stream import START
from harness.evaluation_stream import JoinStateRun
from harness.evaluation_stream import events
from tests import test_evaluation_streaming as streaming
from tests.evaluation_data import iso

DAY = 86400
HOUR = 3600


def _config():
  return streaming._config(key_segments=(), segment_by=(), alert_rules=())


def _run(n, days, lateness):
  run = JoinStateRun(_config(), lateness, HOUR)
  run.feed(events(n, days * DAY, lateness), DAY // 2)
  return run


def _reasons(dead):
  return sorted(d['reason'] for d in dead)


@pytest.mark.parametrize('lateness', [DAY, DAY // 4])
def test_held_predictions_follow_the_lateness_not_the_stream(lateness):
  n, days = 6000, 20
  run = _run(n, days, lateness)
  per_lateness = n * lateness / (days * DAY)
  per_step = n * HOUR / (days * DAY)
  # Each prediction is held one lateness (its key flushed then), so what is
  # held is the rate times the lateness, from the first lateness to the
  # last prediction.
  first, tombstones_from, last = (
      iso(START + datetime.timedelta(seconds=s))
      for s in (lateness, 2 * lateness, days * DAY))
  steady = [s for s in run.samples if first <= s['watermark'] <= last]
  assert len(steady) >= 30
  for s in steady:
    assert per_lateness - per_step <= s['predictions'] <= (
        per_lateness + per_step), s
    # A flushed key's tombstone lasts one more lateness.
    assert s['tombstones'] <= per_lateness + per_step, s
    if s['watermark'] >= tombstones_from:
      assert per_lateness - per_step <= s['tombstones'], s
    assert s['keys'] <= s['predictions'] + s['labels']
    assert s['state_bytes'] > 0
  assert run.peak['predictions'] <= per_lateness + per_step
  assert run.peak['tombstones'] <= per_lateness + per_step
  end = run.finish()  # measure() checks the counters against the state
  assert (end['keys_with_state'], end['predictions'], end['labels'],
          end['tombstones'], end['state_bytes']) == (0, 0, 0, 0, 0)
  assert run.driver.keys == {}
  # Nothing lost: every prediction is one scored row, every label joined
  # (one per key) or a dead letter.
  labels = run.messages - n
  labelled = [s for s in run.driver.decisions if s.value[1][3] is not None]
  assert len(run.driver.decisions) == n
  assert len(labelled) + len(run.driver.dead) == labels
  # The labels 1-2 lateness after their prediction meet its tombstone.
  assert 0.03 * labels < len(run.driver.dead) < 0.07 * labels
  assert set(_reasons(run.driver.dead)) == {'late_label'}


def test_the_driven_join_gives_what_the_pipeline_gives():
  lateness = DAY
  stream = list(events(150, 3 * DAY, lateness, seed=4))
  run = JoinStateRun(_config(), lateness, streaming.STEP)
  run.feed(iter(stream), DAY)
  run.finish()
  rows = {PREDICTION: [], LABEL: []}
  for _, kind, line in stream:
    rows[kind].append(json.loads(line))
  assert run.driver.dead  # some labels came after their key was flushed

  driven = {}
  for scored in run.driver.decisions:
    (_, version), row = scored.value
    count, labelled = driven.get(version, (0, 0))
    driven[version] = (count + 1, labelled + (row[3] is not None))
  driven_dead = _reasons(run.driver.dead)

  def check(got):
    counts = {}
    for (_, version, _), r in streaming._final(got['slices']).items():
      count, labelled = counts.get(version, (0, 0))
      counts[version] = (count + r['count'], labelled + r['labelled'])
    assert counts == driven
    assert _reasons(got['dead_letters']) == driven_dead

  end = stream[-1][0] + 3 * lateness
  streaming._run_streaming(rows[PREDICTION], rows[LABEL], _config(),
                           lateness, end, check)
