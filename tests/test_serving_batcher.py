"""The micro-batcher on its own: batching, slicing, limits, isolation.

The model here is a plain function that records its calls, so the tests can
see exactly which instances went into which model call.
"""
import asyncio

import pytest

from serving.batcher import BatcherClosed
from serving.batcher import MicroBatcher


class RecordingModel:
  """Doubles numbers; refuses negative ones, like a signature rejecting
  a bad input."""

  def __init__(self):
    self.calls = []

  def __call__(self, instances, signature_name):
    self.calls.append((signature_name, list(instances)))
    if any(x < 0 for x in instances):
      raise ValueError('negative input')
    return [{'signature': signature_name, 'double': 2 * x} for x in instances]


def run(coroutine_fn, model, max_size=8, timeout_ms=50):
  async def main():
    batcher = MicroBatcher(model, max_size, timeout_ms)
    batcher.start()
    try:
      return await coroutine_fn(batcher)
    finally:
      await batcher.close()
  return asyncio.run(main())


def test_concurrent_requests_share_one_call_and_get_their_own_slice():
  model = RecordingModel()

  async def requests(batcher):
    return await asyncio.gather(
        batcher.predict([1, 2], 'a'), batcher.predict([3], 'a'),
        batcher.predict([4, 5, 6], 'a'))
  results = run(requests, model)
  assert model.calls == [('a', [1, 2, 3, 4, 5, 6])]
  assert [[p['double'] for p in r] for r in results] == [[2, 4], [6], [8, 10, 12]]


def test_batches_hold_at_most_max_size_whole_requests():
  model = RecordingModel()

  async def requests(batcher):
    return await asyncio.gather(*[batcher.predict([i, i], 'a')
                                  for i in range(5)])
  results = run(requests, model, max_size=4)
  assert [len(x) for _, x in model.calls] == [4, 4, 2]
  assert [[p['double'] for p in r] for r in results] == [
      [2 * i, 2 * i] for i in range(5)]


def test_a_request_larger_than_max_size_goes_alone():
  model = RecordingModel()
  results = run(lambda b: b.predict(list(range(10)), 'a'), model, max_size=4)
  assert model.calls == [('a', list(range(10)))]
  assert len(results) == 10


def test_signatures_are_never_mixed_in_one_call():
  model = RecordingModel()

  async def requests(batcher):
    return await asyncio.gather(
        batcher.predict([1], 'a'), batcher.predict([2], 'b'),
        batcher.predict([3], 'a'))
  results = run(requests, model)
  assert sorted(model.calls) == [('a', [1, 3]), ('b', [2])]
  assert [r[0]['signature'] for r in results] == ['a', 'b', 'a']


def test_a_failing_request_does_not_fail_its_batch_mates():
  model = RecordingModel()

  async def requests(batcher):
    return await asyncio.gather(
        batcher.predict([1], 'a'), batcher.predict([-1], 'a'),
        batcher.predict([3], 'a'), return_exceptions=True)
  good, bad, other = run(requests, model)
  assert good == [{'signature': 'a', 'double': 2}]
  assert isinstance(bad, ValueError)
  assert other == [{'signature': 'a', 'double': 6}]
  assert model.calls[0] == ('a', [1, -1, 3])  # merged first, then alone


def test_an_idle_request_waits_at_most_the_timeout():
  model = RecordingModel()

  async def one(batcher):
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.predict([1], 'a')
    return loop.time() - started
  waited = run(one, model, max_size=100, timeout_ms=30)
  assert 0.02 < waited < 2.0


def test_closed_batcher_refuses():
  async def main():
    batcher = MicroBatcher(RecordingModel(), 4, 5)
    with pytest.raises(BatcherClosed):
      await batcher.predict([1], 'a')
  asyncio.run(main())
