"""Repeated keys in a stream: one prediction per key within a window.

Pub/Sub delivers at least once, and clients retry: the same key can arrive
again seconds later. A key seen again within `window_s` seconds of event
time after its first occurrence is a dead letter (`duplicate_key`, stage
`keys`, as batch_predict's), so a reader counts inputs = predictions + dead
letters; a later repeat is a new request and is predicted again.

State is bounded: each key's first occurrence's event time, held until the
watermark passes first + window_s, then cleared. So a repeat that arrives
after the watermark passed it (a message much later than its event time)
finds no state and is predicted again. Memory is one timestamp per key seen
within the last window.

A local run (`shards`, LOCAL_SHARDS) holds the keys in shards (a stable
hash of the key), each a bag of (key, first event time) and one event-time
timer at its earliest expiry: Beam's Python DirectRunner keeps every key it
has ever seen and walks all of them for due timers between any two bundles,
so with a key per message a local job slowed down with every message it had
read (benchmarks/optimisations.md). A shard's bag is read once per bundle
that touches it and rewritten when its timer fires. Elsewhere (Dataflow)
each key is its own shard: a bag of one entry and its own timer, so the
stage scales with the keys and no bundle reads more than its keys' state.
"""
import typing
import zlib

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import Timestamp

from common.config_error import ConfigError
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject
from transforms.keyed import keys

METRICS_NAMESPACE = 'dedup'


LOCAL_SHARDS = 64


class _WithShard:
  """(key, record) -> (its shard, (key, record)): with `shards`, one of that
  many (a stable hash, the same in every process); without, the key itself
  (a shard per key)."""

  def __init__(self, shards=None):
    self._shards = shards

  def __call__(self, element):
    key = element[0]
    if self._shards is None:
      return str(key), element
    return str(zlib.crc32(str(key).encode('utf-8')) % self._shards), element


class _Shard:
  """A shard's keys as this bundle sees them: {key: first micros} and the
  earliest expiry its timer is set at (None: no timer)."""
  __slots__ = ('first_by_key', 'timer_at')

  def __init__(self, entries, window_micros):
    self.first_by_key = dict(entries)  # a key added again: its latest
    self.timer_at = (min(self.first_by_key.values()) + window_micros
                     if self.first_by_key else None)


@beam.typehints.with_input_types(typing.Tuple[str, typing.Any])
@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _DropRepeats(beam.DoFn):
  """(shard, (key, record)) in the global window -> the first (key, record)
  per key per window."""
  FIRST = BagStateSpec('first_micros', FastPrimitivesCoder())
  EXPIRY = TimerSpec('expiry', TimeDomain.WATERMARK)

  def __init__(self, window_s):
    self._window_micros = int(round(window_s * 1e6))
    self._kept = Metrics.counter(METRICS_NAMESPACE, 'kept')
    self._cleared = Metrics.counter(METRICS_NAMESPACE, 'keys_cleared')
    self._shards = {}

  def start_bundle(self):
    self._shards = {}  # shard -> _Shard, read once per bundle

  def process(self, element, timestamp=beam.DoFn.TimestampParam,
              first=beam.DoFn.StateParam(FIRST),
              expiry=beam.DoFn.TimerParam(EXPIRY)):
    shard_id, (key, record) = element
    shard = self._shards.get(shard_id)
    if shard is None:
      shard = self._shards[shard_id] = _Shard(first.read(),
                                              self._window_micros)
    now = timestamp.micros
    seen = shard.first_by_key.get(key)
    if seen is not None and now < seen + self._window_micros:
      yield reject(key, keys.STAGE, 'duplicate_key', record,
                   f'key {key!r} already predicted for event time '
                   f'{Timestamp(micros=seen).to_rfc3339()}, within the dedup '
                   'window')
      return
    shard.first_by_key[key] = now
    first.add((key, now))
    expires = now + self._window_micros
    if shard.timer_at is None or expires < shard.timer_at:
      shard.timer_at = expires
      expiry.set(Timestamp(micros=expires))
    self._kept.inc()
    yield key, record

  @on_timer(EXPIRY)
  def expire(self, shard_id=beam.DoFn.KeyParam,
             fired=beam.DoFn.TimestampParam,
             first=beam.DoFn.StateParam(FIRST),
             expiry=beam.DoFn.TimerParam(EXPIRY)):
    """Forgets the keys whose window ended by the timer's time; the timer
    moves to the next earliest end."""
    entries = dict(first.read())
    due = fired.micros - self._window_micros
    left = [(k, t) for k, t in entries.items() if t > due]
    self._cleared.inc(len(entries) - len(left))
    first.clear()
    for entry in left:
      first.add(entry)
    shard = _Shard(left, self._window_micros)
    if shard.timer_at is not None:
      expiry.set(Timestamp(micros=shard.timer_at))
    if shard_id in self._shards:
      self._shards[shard_id] = shard


class DropRepeatedKeys(beam.PTransform):
  """(key, record) -> Routed: the first occurrence of each key within
  `window_s` seconds of event time, and a `duplicate_key` dead letter for
  every repeat within it (see the module doc; a repeat with an earlier event
  time than the kept one is a repeat too). `shards`: the keys' state in that
  many shards (local runs, LOCAL_SHARDS); None: a shard per key."""

  def __init__(self, window_s, shards=None):
    super().__init__()
    if window_s <= 0:
      raise ConfigError('dedup_window', 'must be positive')
    self._fn = _DropRepeats(window_s)
    self._shard = _WithShard(shards)

  def expand(self, keyed):
    return (keyed
            | 'Shard' >> beam.Map(self._shard)
            | RoutedParDo(self._fn))
