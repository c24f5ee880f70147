"""Server-side micro-batching: many small requests, one model call.

A SavedModel call has a fixed cost (dispatch, tensor conversion) that a batch
of 64 pays once and 64 single-instance requests pay 64 times. The batcher
holds requests for at most `timeout_ms` (measured from the oldest waiting
request) or until `max_size` instances are waiting, then makes one call per
signature and hands each request exactly its own slice of the outputs, so
interleaved requests are answered correctly (their keys travel with them).

One batch runs at a time: while the model is busy, new requests queue up, so
batches grow with load by themselves and stay at one instance when idle.

Failure isolation: if a merged call fails (one request's bad input, or a
model error), each request of that batch is retried alone, so only the
culprit gets the error and the others their predictions.
"""
import asyncio
import collections
import dataclasses
import logging

from starlette.concurrency import run_in_threadpool

LOG = logging.getLogger('serving')


class BatcherClosed(RuntimeError):
  """The batcher was shut down before the request was served."""


@dataclasses.dataclass
class _Pending:
  instances: list
  signature_name: str
  future: asyncio.Future
  arrived: float


class MicroBatcher:
  """Accumulates `predict(instances, signature_name)` calls into batches.

  `predict_fn(instances, signature_name) -> predictions` is the blocking
  model call; it runs in a worker thread so the event loop keeps accepting.
  """

  def __init__(self, predict_fn, max_size, timeout_ms):
    self._predict_fn = predict_fn
    self._max_size = max_size
    self._timeout = timeout_ms / 1000.0
    self._pending = collections.deque()
    self._pending_size = 0
    self._arrived = None
    self._task = None
    self.batches = 0        # model calls made for merged batches
    self.batched = 0        # instances that went through them

  def start(self):
    """Starts the batching loop on the running event loop."""
    self._arrived = asyncio.Event()
    self._task = asyncio.get_running_loop().create_task(self._run())

  async def close(self):
    """Stops the loop; requests still waiting get BatcherClosed."""
    if self._task is not None:
      self._task.cancel()
      try:
        await self._task
      except asyncio.CancelledError:
        pass
      self._task = None
    while self._pending:
      item = self._pending.popleft()
      if not item.future.done():
        item.future.set_exception(BatcherClosed('server is shutting down'))
    self._pending_size = 0

  async def predict(self, instances, signature_name):
    """Queues one request's instances; returns its predictions, in order."""
    if self._task is None:
      raise BatcherClosed('micro-batcher is not running')
    loop = asyncio.get_running_loop()
    item = _Pending(instances, signature_name, loop.create_future(),
                    loop.time())
    self._pending.append(item)
    self._pending_size += len(instances)
    self._arrived.set()
    return await item.future

  async def _run(self):
    loop = asyncio.get_running_loop()
    while True:
      while not self._pending:
        self._arrived.clear()
        await self._arrived.wait()
      deadline = self._pending[0].arrived + self._timeout
      while self._pending_size < self._max_size:
        remaining = deadline - loop.time()
        if remaining <= 0:
          break
        self._arrived.clear()
        try:
          await asyncio.wait_for(self._arrived.wait(), remaining)
        except TimeoutError:
          break
      batch = self._take()
      try:
        await self._serve(batch)
      except Exception as e:  # never let the loop die: fail this batch only
        LOG.exception('micro-batch failed')
        for item in batch:
          if not item.future.done():
            item.future.set_exception(e)

  def _take(self):
    """Up to max_size instances of waiting requests, whole requests only
    (a request larger than max_size goes alone); cancelled ones dropped."""
    batch, size = [], 0
    while self._pending:
      item = self._pending[0]
      if batch and size + len(item.instances) > self._max_size:
        break
      self._pending.popleft()
      self._pending_size -= len(item.instances)
      if item.future.done():  # the client went away
        continue
      batch.append(item)
      size += len(item.instances)
    return batch

  async def _serve(self, batch):
    by_signature = collections.defaultdict(list)
    for item in batch:
      by_signature[item.signature_name].append(item)
    for signature_name, items in by_signature.items():
      instances = [x for item in items for x in item.instances]
      try:
        predictions = await run_in_threadpool(
            self._predict_fn, instances, signature_name)
        if len(predictions) != len(instances):
          raise RuntimeError(
              f'model returned {len(predictions)} predictions for '
              f'{len(instances)} instances')
      except Exception as e:
        if len(items) == 1:
          _resolve(items[0], exception=e)
        else:
          await self._serve_one_by_one(items, signature_name)
        continue
      self.batches += 1
      self.batched += len(instances)
      start = 0
      for item in items:
        end = start + len(item.instances)
        _resolve(item, result=predictions[start:end])
        start = end

  async def _serve_one_by_one(self, items, signature_name):
    for item in items:
      try:
        result = await run_in_threadpool(
            self._predict_fn, item.instances, signature_name)
      except Exception as e:
        _resolve(item, exception=e)
      else:
        _resolve(item, result=result)


def _resolve(item, result=None, exception=None):
  if item.future.done():  # cancelled while the model was running
    return
  if exception is not None:
    item.future.set_exception(exception)
  else:
    item.future.set_result(result)
