"""Request counters, so a running server can be watched from its log.

Per-request access lines are off by default (they cost latency), so the
server logs one INFO line per interval instead, when there was traffic, and
a summary at shutdown: requests answered and instances predicted, requests
refused (4xx) and failed (5xx), and the micro-batcher's model calls. The
counters are only touched on the event loop, so they need no lock.
"""
import collections


class RequestStats:
  """Totals since start, and the counts of the current interval."""

  def __init__(self):
    self.total = collections.Counter()
    self._interval = collections.Counter()

  def answered(self, instances):
    self._add('requests', 1)
    self._add('instances', instances)

  def errored(self, status):
    self._add('failed' if status >= 500 else 'refused', 1)

  def take_interval(self):
    """The counts since the last call (empty when nothing happened)."""
    interval, self._interval = self._interval, collections.Counter()
    return interval

  def _add(self, field, n):
    self.total[field] += n
    self._interval[field] += n


def describe(counts, batcher=None):
  """'12 requests answered (48 instances), 1 refused (4xx), 0 failed (5xx)'."""
  text = (f'{counts["requests"]} requests answered ({counts["instances"]} '
          f'instances), {counts["refused"]} refused (4xx), {counts["failed"]} '
          f'failed (5xx)')
  if batcher is not None and batcher.batches:
    text += (f'; micro-batches so far: {batcher.batches} model calls, '
             f'{batcher.batched / batcher.batches:.1f} instances each')
  return text
