"""A per-worker limit on API calls: a token bucket shared by the process.

Comments arrive in bursts (a backlog after a restart, a viral thread), and a
bundle of them fans out into concurrent API calls; without a limit a burst
of comments is a burst of calls, which the API answers with
RESOURCE_EXHAUSTED, whose retries make the burst longer. The bucket holds
up to `burst` tokens (default 1) and gains `rate_per_s` a second; each call
takes one, and a caller that finds none waits for its turn (callers are
served in the order they asked). So a worker makes at most `burst - 1 +
rate_per_s` calls in any second, whatever the number of threads and DoFn
instances in it: a quota of `rate_per_s` is never exceeded by the default
bucket. Dataflow runs one such limit per worker process: the job's total
is the limit times the workers.
"""
import threading
import time

from common.process_cache import load_once


class RateLimiter:
  """`acquire()` blocks until the caller may make one call."""

  def __init__(self, rate_per_s, burst=1, clock=time.monotonic,
               sleep=time.sleep):
    if rate_per_s <= 0:
      raise ValueError('rate_per_s must be positive')
    self.rate = float(rate_per_s)
    self.burst = float(burst)
    self._clock, self._sleep = clock, sleep
    self._tokens = self.burst
    self._last = clock()
    self._lock = threading.Lock()
    self.waits = 0

  def acquire(self):
    """Takes a token, waiting for one if none is left; returns the seconds
    waited. Tokens below zero are turns already promised to waiting
    callers, so each waits for its own."""
    with self._lock:
      now = self._clock()
      self._tokens = min(self.burst,
                         self._tokens + (now - self._last) * self.rate)
      self._last = now
      self._tokens -= 1
      wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
      if wait:
        self.waits += 1
    if wait:
      self._sleep(wait)
    return wait


def per_process(name, rate_per_s):
  """The process's one RateLimiter for `name` (e.g. an API endpoint) at
  `rate_per_s`; None for no limit (rate 0 or None)."""
  if not rate_per_s:
    return None
  return load_once(('rate-limit', name, rate_per_s),
                   lambda: RateLimiter(rate_per_s))
