"""Repeated keys in a stream: one prediction per key within a window.

Pub/Sub delivers at least once, and clients retry: the same key can arrive
again seconds later. A key seen again within `window_s` seconds of event
time after its first occurrence is a dead letter (`duplicate_key`, stage
`keys`, as batch_predict's), so a reader counts inputs = predictions + dead
letters; a later repeat is a new request and is predicted again.

State is per key and bounded: the first occurrence's event time, and one
event-time timer at first + window_s that clears it. So a key's state lives
until the watermark passes that instant; a repeat that arrives after the
watermark passed it (a message much later than its event time) finds no
state and is predicted again. Memory is one timestamp per key seen within
the last window.
"""
import typing

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import Timestamp

from common.config_error import ConfigError
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject
from transforms.keyed import keys

METRICS_NAMESPACE = 'dedup'


@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _DropRepeats(beam.DoFn):
  """(key, record) in the global window -> the first per key per window."""
  FIRST = ReadModifyWriteStateSpec('first_micros', VarIntCoder())
  EXPIRY = TimerSpec('expiry', TimeDomain.WATERMARK)

  def __init__(self, window_s):
    self._window_micros = int(round(window_s * 1e6))
    self._kept = Metrics.counter(METRICS_NAMESPACE, 'kept')
    self._cleared = Metrics.counter(METRICS_NAMESPACE, 'keys_cleared')

  def process(self, element, timestamp=beam.DoFn.TimestampParam,
              first=beam.DoFn.StateParam(FIRST),
              expiry=beam.DoFn.TimerParam(EXPIRY)):
    key, record = element
    now = timestamp.micros
    seen = first.read()
    if seen is not None and now < seen + self._window_micros:
      yield reject(key, keys.STAGE, 'duplicate_key', record,
                   f'key {key!r} already predicted for event time '
                   f'{Timestamp(micros=seen).to_rfc3339()}, within the dedup '
                   'window')
      return
    first.write(now)
    expiry.set(Timestamp(micros=now + self._window_micros))
    self._kept.inc()
    yield element

  @on_timer(EXPIRY)
  def expire(self, first=beam.DoFn.StateParam(FIRST)):
    first.clear()
    self._cleared.inc()


class DropRepeatedKeys(beam.PTransform):
  """(key, record) -> Routed: the first occurrence of each key within
  `window_s` seconds of event time, and a `duplicate_key` dead letter for
  every repeat within it (see the module doc; a repeat with an earlier event
  time than the kept one is a repeat too)."""

  def __init__(self, window_s):
    super().__init__()
    if window_s <= 0:
      raise ConfigError('dedup_window', 'must be positive')
    self._fn = _DropRepeats(window_s)

  def expand(self, keyed):
    return keyed | RoutedParDo(self._fn)
