"""Drives a stateful DoFn the way a runner does, with its state in view.

A runner's state is not observable from a pipeline, so tests and the state
benchmark run the real DoFn through this: per-key bag/value state, one
watermark timer per key, timers fired in time order as the watermark
advances. Written for the moderation rule's state and timer parameters
(`buffer`, `ledger_state`, `horizon`/`horizon_state`, `timer_at`, `tick`).
"""
import heapq
import pickle

from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import Timestamp


class _Value(object):

  def __init__(self):
    self.value = None

  def read(self):
    return self.value

  def write(self, value):
    self.value = value

  def clear(self):
    self.value = None


class _Bag(object):

  def __init__(self):
    self.items = []

  def add(self, item):
    self.items.append(item)

  def read(self):
    return list(self.items)

  def clear(self):
    self.items = []


class _Timer(object):

  def __init__(self, key, due):
    self.at = None
    self._key, self._due = key, due

  def set(self, ts):
    self.at = ts.micros
    heapq.heappush(self._due, (self.at, self._key))

  def clear(self):
    self.at = None


class KeyedDriver(object):
  """Per-key state + timers for one DoFn instance, advanced by watermark."""

  def __init__(self, fn):
    self.fn = fn
    self.fn.setup()
    self.keys = {}
    self.decisions, self.dead = [], []
    self.firings = 0
    self._due = []  # (fire micros, key); stale entries are skipped

  def _state(self, key):
    if key not in self.keys:
      self.keys[key] = (_Bag(), _Value(), _Value(), _Value(),
                        _Timer(key, self._due))
    return self.keys[key]

  def _collect(self, outputs):
    for out in outputs or ():
      if isinstance(out, TaggedOutput):
        self.dead.append(out.value)
      else:
        self.decisions.append(out)

  def add(self, key, element, timestamp):
    """Processes `(key, element)` at `timestamp` (a Beam Timestamp)."""
    bag, ledger, horizon, timer_at, timer = self._state(key)
    self._collect(self.fn.process(
        (key, element), t=timestamp, buffer=bag, ledger_state=ledger,
        horizon=horizon, timer_at=timer_at, tick=timer))

  def advance(self, watermark_micros):
    """Fires every timer at or before the watermark, earliest first."""
    while self._due and self._due[0][0] <= watermark_micros:
      at, key = heapq.heappop(self._due)
      bag, ledger, horizon, timer_at, timer = self.keys[key]
      if timer.at != at:
        continue  # reset or cleared since
      timer.at = None
      self.firings += 1
      self._collect(self.fn.on_tick(
          fire=Timestamp(micros=at), buffer=bag, ledger_state=ledger,
          horizon_state=horizon, timer_at=timer_at, tick=timer))

  def live_keys(self):
    """Keys holding any state or timer."""
    return {k for k, (bag, ledger, horizon, timer_at, timer)
            in self.keys.items()
            if bag.items or ledger.value is not None or
            horizon.value is not None or timer_at.value is not None or
            timer.at is not None}

  def state_bytes(self):
    """Bytes the runner would hold: each key's state, pickled."""
    return sum(
        len(pickle.dumps(bag.items)) * bool(bag.items) +
        len(pickle.dumps(ledger.value)) * (ledger.value is not None) +
        len(pickle.dumps(horizon.value)) * (horizon.value is not None)
        for bag, ledger, horizon, _, _ in self.keys.values())
