"""Admission control: a bound on the predict requests inside the server.

Under more load than the model can serve, a server that admits everything
queues it: every request waits behind all the others, latency grows with
the queue (without bound while the overload lasts), and so does the memory
the waiting bodies hold. Past `max_pending` requests in the server at once
(reading, waiting for the model or the micro-batcher, or running), a new
predict request is answered at once with 503 and a Retry-After header
instead: admitted requests wait behind at most `max_pending - 1` others, so
their latency stays near max_pending times the model's time per request
(divided by the requests it serves at once), and the clients are told when
to come back. Status and health routes are never refused.

Retry-After is the time the server needs to finish what it holds, at the
rate it finished requests over the last few seconds (at least 1 s).
"""
import collections
import contextlib
import math
import time

RATE_WINDOW_S = 5.0


class Overloaded(Exception):
  """The server holds its limit of requests; come back after
  `retry_after_s` seconds."""

  def __init__(self, pending, retry_after_s):
    super().__init__(
        f'server overloaded: {pending} requests in progress; retry after '
        f'{retry_after_s} s')
    self.retry_after_s = retry_after_s


class Admission:
  """Counts the predict requests in progress. Used on the event loop only,
  so it needs no lock."""

  def __init__(self, max_pending, clock=time.monotonic):
    self.max_pending = max_pending
    self.pending = 0
    self.shed = 0
    self._clock = clock
    self._finished = collections.deque()

  def retry_after_s(self):
    """Whole seconds to finish the requests held, at the recent rate."""
    now = self._clock()
    while self._finished and self._finished[0] < now - RATE_WINDOW_S:
      self._finished.popleft()
    rate = len(self._finished) / RATE_WINDOW_S
    return max(1, math.ceil(self.pending / rate)) if rate else 1

  @contextlib.contextmanager
  def admit(self):
    """Holds one place for the block; raises Overloaded when none is left."""
    if self.pending >= self.max_pending:
      self.shed += 1
      raise Overloaded(self.pending, self.retry_after_s())
    self.pending += 1
    try:
      yield
    finally:
      self.pending -= 1
      self._finished.append(self._clock())
