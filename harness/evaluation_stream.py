"""A long stream of predictions and their labels, and the streaming join's
state over it.

`events` makes the stream (generated as it is consumed, so a stream of
millions of messages never sits in memory); `JoinStateRun` drives the real
parsing DoFns and the real join DoFn (transforms/evaluation/stream_join.py)
over it the way a runner does (harness.keyed_state), the watermark following
event time in steps as a source's does, and samples what the join holds.
The tests check the state's bounds with it; benchmarks/evaluation_stream.py
measures a 1M-message stream.
"""
import datetime
import heapq
import json
import random

from apache_beam.utils.timestamp import Timestamp

from common.records.prediction_log import log_row
from harness.keyed_state import KeyedDriver
from transforms.dead_letter import DEAD_LETTER
from transforms.evaluation import stream_join
from transforms.evaluation.rows import ParseLabels
from transforms.evaluation.rows import ParsePredictions

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
PREDICTION, LABEL = stream_join.PREDICTION, stream_join.LABEL


def events(n_predictions, span_s, lateness_s, labelled=0.9, too_late=0.05,
           seed=0):
  """(event time in epoch seconds, PREDICTION | LABEL, JSON line), in
  event-time order: `n_predictions` predictions evenly over `span_s` from
  START (two model versions, keys with age and sex segments), `labelled`
  of them labelled, the label up to 0.9 x `lateness_s` after its
  prediction, except `too_late` of those, which come 1-2 lateness later
  (after their key was flushed)."""
  rng = random.Random(seed)
  start = START.timestamp()
  pending = []  # (label time, sequence, line): labels not yet due
  for i in range(n_predictions):
    t = start + i * span_s / n_predictions
    while pending and pending[0][0] <= t:
      at, _, line = heapq.heappop(pending)
      yield at, LABEL, line
    key = f'{rng.choice("234567")}5-{rng.choice("FM")}-{i:08d}'
    true = rng.random() < 0.5
    score = round(min(1.0, max(0.0, rng.gauss(0.7 if true else 0.3, 0.2))), 3)
    when = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    yield t, PREDICTION, json.dumps(log_row(
        'sentiment', str(1 + i % 2), key, {'reviews': f'review {i}'},
        {'positive_review_probability': score}, when.isoformat()))
    if rng.random() < labelled:
      delay = (rng.uniform(1.0, 2.0) if rng.random() < too_late
               else rng.uniform(0.0, 0.9)) * lateness_s
      labeled_at = datetime.datetime.fromtimestamp(
          t + delay, datetime.timezone.utc)
      heapq.heappush(pending, (t + delay, i, json.dumps({
          'key': key, 'groundtruth': 'positive' if true else 'negative',
          'labeled_at': labeled_at.isoformat()})))
  while pending:
    at, _, line = heapq.heappop(pending)
    yield at, LABEL, line


class JoinStateRun(object):
  """The join of one stream, driven message by message; `samples` holds
  what the join held at each sampling point."""

  def __init__(self, config, lateness_s, step_s):
    self._parse = {PREDICTION: ParsePredictions(config),
                   LABEL: ParseLabels(config)}
    self.driver = KeyedDriver(stream_join.JoinInEventTime(config, lateness_s))
    self._step = step_s
    self.watermark = None
    self.messages = self.parse_dead = 0
    self.peak = {'keys': 0, 'predictions': 0, 'labels': 0, 'tombstones': 0}
    self.samples = []

  def held(self):
    """What the join's own counters say it holds now."""
    return {name: self.driver.counter(f'{name}_in_state')
            for name in self.peak}

  def sample(self):
    """Records what the join holds now (`measure`) in `samples`."""
    held = self.measure()
    self.samples.append(held)
    return held

  def measure(self):
    """What the join holds, from its state (and its counters, which must
    agree): keys, rows and encoded bytes."""
    state = self.driver.keys.values()
    held = {
        'watermark': datetime.datetime.fromtimestamp(
            self.watermark, datetime.timezone.utc).isoformat(),
        'messages': self.messages,
        'keys': sum(s['flush_at'].held() for s in state),
        'predictions': sum(len(s['predictions'].items) for s in state),
        'labels': sum(len(s['labels'].items) for s in state),
        'tombstones': sum(s['joined_at'].held() for s in state),
        'keys_with_state': len(self.driver.live_keys()),
        'state_bytes': self.driver.state_bytes()}
    counted = self.held()
    if any(counted[name] != held[name] for name in counted):
      raise AssertionError(f'counters {counted} disagree with state {held}')
    return held

  def _advance(self, to):
    held = self.held()
    for name, value in held.items():
      self.peak[name] = max(self.peak[name], value)
    self.watermark = to
    self.driver.advance(round(to * 1_000_000))

  def feed(self, stream, sample_every_s):
    """Every message of `stream` (events()), parsed and joined; the
    watermark moves in steps behind the messages, peaks are taken before
    each step, and a sample every `sample_every_s` of event time."""
    next_sample = None
    for t, kind, line in stream:
      if self.watermark is None:
        self.watermark = t // self._step * self._step
        next_sample = self.watermark + sample_every_s
      while t >= self.watermark + self._step:
        self._advance(self.watermark + self._step)
        if self.watermark >= next_sample:
          self.sample()
          next_sample += sample_every_s
      self.messages += 1
      for out in self._parse[kind].process(line):
        if getattr(out, 'tag', None) == DEAD_LETTER:
          self.parse_dead += 1
          continue
        key, value = out  # at its event time: the prediction's, labeled_at
        self.driver.add(key, (kind, value), Timestamp(micros=round(
            t * 1_000_000)))

  def finish(self):
    """The stream has ended: the watermark goes past every timer."""
    self._advance(self.watermark + 10 * 365 * 86400)
    return self.measure()
