"""Drives a stateful DoFn the way a runner does, with its state in view.

A runner's state is not observable from a pipeline, so tests and the state
benchmarks run the real DoFn through this: per-key bag/value state and
watermark timers, each timer's callback called in time order as the
watermark advances. The DoFn's parameters are read from its signature, as a
runner reads them (StateParam, TimerParam, TimestampParam, KeyParam), so
any keyed stateful DoFn runs unchanged: the moderation rule and the
streaming evaluation join both do. The Beam metrics the DoFn updates are
kept in a metrics container of the driver's own (`counter`), as a runner's
worker keeps them, so a DoFn's counters can be checked against its state.
"""
import heapq
import inspect

import apache_beam as beam
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.core import _StateDoFnParam
from apache_beam.transforms.core import _TimerDoFnParam
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.utils import counters
from apache_beam.utils.timestamp import Timestamp

from transforms.dead_letter import DEAD_LETTER


class _Value(object):

  def __init__(self, coder):
    self.value = None
    self._coder = coder

  def read(self):
    return self.value

  def write(self, value):
    self.value = value

  def clear(self):
    self.value = None

  def held(self):
    return self.value is not None

  def encoded_bytes(self):
    return len(self._coder.encode(self.value)) if self.held() else 0


class _Bag(object):

  def __init__(self, coder):
    self.items = []
    self._coder = coder

  def add(self, item):
    self.items.append(item)

  def read(self):
    return list(self.items)

  def clear(self):
    self.items = []

  def held(self):
    return bool(self.items)

  def encoded_bytes(self):
    return sum(len(self._coder.encode(item)) for item in self.items)


class _Timer(object):

  def __init__(self, key, name, due):
    self.at = None
    self._key, self._name, self._due = key, name, due

  def set(self, ts):
    self.at = ts.micros
    heapq.heappush(self._due, (self.at, self._key, self._name))

  def clear(self):
    self.at = None


def _parameters(method):
  """(argument name, what the runner passes: 'spec' (a state or timer
  spec), 'timestamp' or 'key', the spec) of a DoFn method, from its
  defaults."""
  out = []
  for name, p in inspect.signature(method).parameters.items():
    if isinstance(p.default, _StateDoFnParam):
      out.append((name, 'spec', p.default.state_spec))
    elif isinstance(p.default, _TimerDoFnParam):
      out.append((name, 'spec', p.default.timer_spec))
    elif p.default is beam.DoFn.TimestampParam:
      out.append((name, 'timestamp', None))
    elif p.default is beam.DoFn.KeyParam:
      out.append((name, 'key', None))
  return out


class KeyedDriver(object):
  """Per-key state + timers for one DoFn instance, advanced by watermark.

  Outputs: `decisions` (the main output), `dead` (dead letters), `tagged`
  (other tagged outputs, by tag); `firings` counts timer callbacks."""

  def __init__(self, fn):
    self.fn = fn
    self.fn.setup()
    self.keys = {}
    self.decisions, self.dead, self.tagged = [], [], {}
    self.firings = 0
    self.metrics = MetricsContainer('driver')
    self._sampler = statesampler.StateSampler('driver',
                                              counters.CounterFactory())
    self._scope = self._sampler.scoped_state('driver', 'process',
                                             metrics_container=self.metrics)
    self._due = []  # (fire micros, key, timer name); stale ones skipped
    self._process = _parameters(fn.process)
    specs = {s.name: s for _, kind, s in self._process if kind == 'spec'}
    self._callbacks = {}
    for spec in [s for s in specs.values() if hasattr(s, 'time_domain')]:
      callback = spec._attached_callback  # what @on_timer registered
      self._callbacks[spec.name] = (
          callback, _parameters(callback.__get__(fn)))
      specs.update((s.name, s) for _, kind, s in self._callbacks[spec.name][1]
                   if kind == 'spec')
    self._specs = list(specs.values())

  def _state(self, key):
    if key not in self.keys:
      self.keys[key] = {
          s.name: (_Timer(key, s.name, self._due)
                   if hasattr(s, 'time_domain') else
                   _Bag(s.coder) if isinstance(s, BagStateSpec) else
                   _Value(s.coder))
          for s in self._specs}
    return self.keys[key]

  def _call(self, method, parameters, key, timestamp, *args):
    state = self._state(key)
    kwargs = {}
    for name, kind, spec in parameters:
      kwargs[name] = (state[spec.name] if kind == 'spec' else
                      timestamp if kind == 'timestamp' else key)
    previous = statesampler.get_current_tracker()
    statesampler.set_current_tracker(self._sampler)
    try:
      with self._scope:
        self._collect(method(*args, **kwargs))
    finally:
      statesampler.set_current_tracker(previous)

  def _collect(self, outputs):
    for out in outputs or ():
      if isinstance(out, TaggedOutput):
        if out.tag == DEAD_LETTER:
          self.dead.append(out.value)
        else:
          self.tagged.setdefault(out.tag, []).append(out.value)
      else:
        self.decisions.append(out)

  def add(self, key, element, timestamp):
    """Processes `(key, element)` at `timestamp` (a Beam Timestamp)."""
    self._call(self.fn.process, self._process, key, timestamp, (key, element))

  def advance(self, watermark_micros):
    """Fires every timer at or before the watermark, earliest first."""
    while self._due and self._due[0][0] <= watermark_micros:
      at, key, name = heapq.heappop(self._due)
      state = self.keys.get(key)
      if state is None or state[name].at != at:
        continue  # reset or cleared since
      state[name].at = None
      self.firings += 1
      callback, parameters = self._callbacks[name]
      self._call(callback, parameters, key, Timestamp(micros=at), self.fn)
      if not self._holds(state):
        del self.keys[key]  # as a runner drops a key's empty state

  @staticmethod
  def _holds(state):
    return any(s.at is not None if isinstance(s, _Timer) else s.held()
               for s in state.values())

  def live_keys(self):
    """Keys holding any state or timer."""
    return {k for k, state in self.keys.items() if self._holds(state)}

  def state_bytes(self):
    """Bytes the runner would hold: each state cell's items, encoded by
    the state's coder."""
    return sum(s.encoded_bytes() for state in self.keys.values()
               for s in state.values() if not isinstance(s, _Timer))

  def counter(self, name):
    """The value of the Beam counter `name` (any namespace) that the DoFn
    updated; 0 if it never did."""
    return sum(value for key, value in
               self.metrics.get_cumulative().counters.items()
               if key.metric.name == name)
