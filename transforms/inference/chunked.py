"""RunInference over chunks of records, overlapped with the rest of the job.

Each element is a chunk of (key, record) (transforms.record_chunks), already
one model batch, so Beam's batching is skipped (its `should_skip_batching`
contract, as `with_no_batching()` sets) and each chunk comes out as ONE
element, a chunk of (key, PredictionResult). The wrapped SignatureModelHandler
does the model work: loaded once per process, failing batches bisected.

Why overlap: a worker runs its fused steps one element at a time, so while
TensorFlow computes a batch (outside the GIL, ~85% of a batch's time on the
demo model) the Python steps around it (parsing, keys, checks, formatting,
writing) wait, and one core idles. With `threads` > 0 the handler hands each
batch to a small per-process thread pool and returns at once; the next step
(`_AwaitChunks`) holds up to `2 x threads` pending batches and passes their
results on in the order they were submitted. So TensorFlow works on a few
batches at once while the worker thread prepares the next ones and formats
the previous ones; results, order within a bundle and failure isolation are
unchanged. Only for the global window (batch jobs): pending batches are
drained at the end of each bundle, which must emit in the one window there is.
"""
import collections
import concurrent.futures
import os
import threading
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.ml.inference.base import RunInference
from apache_beam.transforms.window import GlobalWindows

_POOLS = {}
_POOLS_LOCK = threading.Lock()


def usable_cores():
  """Cores this process may run on: its CPU affinity where the OS keeps one
  (a container or `taskset` pinned to a cpuset sees its share, not the
  host's count), else os.cpu_count()."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # no affinity on this platform
    return os.cpu_count() or 1


def default_threads(local):
  """Model calls in flight per process when the job does not say: on a
  local runner one more than the usable cores, at most 4, so the model
  keeps every core busy while the worker thread does the Python steps
  (benchmarks/optimisations.md has the measured best); elsewhere 0 (a
  distributed runner already runs a worker per core)."""
  return min(4, usable_cores() + 1) if local else 0


def _pool(threads):
  """One thread pool per process and size, shared by every DoFn instance."""
  with _POOLS_LOCK:
    if threads not in _POOLS:
      _POOLS[threads] = concurrent.futures.ThreadPoolExecutor(
          threads, thread_name_prefix='inference')
    return _POOLS[threads]


class ChunkModelHandler(ModelHandler):
  """RunInference handler for chunks of (key, record); see the module doc.

  threads: 0 predicts in the calling thread (one chunk of results per
  chunk); more returns one PendingChunk per chunk, for _AwaitChunks.
  """

  def __init__(self, handler, threads=0):
    super().__init__()
    self._handler = handler
    self._threads = threads

  def load_model(self):
    return self._handler.load_model()

  def _predict(self, chunk, model, inference_args):
    started = time.monotonic()
    results = self._handler.run_inference(
        [record for _, record in chunk], model, inference_args)
    return ([(key, result) for (key, _), result in zip(chunk, results)],
            time.monotonic() - started)

  def run_inference(self, batch, model, inference_args=None):
    if not self._threads:
      return [self._predict(batch, model, inference_args)[0]]
    return [PendingChunk(_pool(self._threads).submit(
        self._predict, batch, model, inference_args))]

  def get_num_bytes(self, batch):
    return self._handler.get_num_bytes([record for _, record in batch])

  def get_metrics_namespace(self):
    return self._handler.get_metrics_namespace()

  def update_model_path(self, model_path=None):
    self._handler.update_model_path(model_path)

  def share_model_across_processes(self):
    return self._handler.share_model_across_processes()

  def model_copies(self):
    return self._handler.model_copies()

  def should_skip_batching(self):
    return True


class PendingChunk:
  """A chunk's results still being computed (a Future), between RunInference
  and _AwaitChunks, which are always fused: it never leaves the process.
  Beam samples element sizes by pickling them, so it pickles, without its
  Future; _AwaitChunks refuses such a copy."""
  __slots__ = ('future',)

  def __init__(self, future):
    self.future = future

  def __reduce__(self):
    return PendingChunk, (None,)


class _AwaitChunks(beam.DoFn):
  """PendingChunk -> its chunk of (key, PredictionResult), in submission
  order, keeping up to `depth` batches in flight."""

  def __init__(self, depth):
    self._depth = depth
    self._latency = Metrics.distribution('inference', 'batch_latency_ms')

  def start_bundle(self):
    self._pending = collections.deque()

  def _result(self):
    chunk, seconds = self._pending.popleft().future.result()
    self._latency.update(int(seconds * 1000))
    return chunk

  def process(self, pending):
    if pending.future is None:
      raise RuntimeError('a pending inference was copied out of its process; '
                         'RunInference and the step awaiting it must be fused')
    self._pending.append(pending)
    while self._pending and (len(self._pending) > self._depth or
                             self._pending[0].future.done()):
      yield self._result()

  def finish_bundle(self):
    while self._pending:
      yield GlobalWindows.windowed_value(self._result())


class RunChunkInference(beam.PTransform):
  """Chunks of valid (key, record) -> chunks of (key, PredictionResult).

  handler: a SignatureModelHandler. threads: model calls in flight at once
  per process (0: in the worker thread, as RunInference does by itself);
  only used in the global window.
  """

  def __init__(self, handler, threads=0):
    super().__init__()
    self._handler = handler
    self._threads = threads

  def expand(self, chunks):
    threads = (self._threads
               if isinstance(chunks.windowing.windowfn, GlobalWindows) else 0)
    shared = self._handler.share_model_across_processes()
    results = chunks | 'RunInference' >> RunInference(
        ChunkModelHandler(self._handler, threads),
        model_identifier=self._handler.model_tag if shared else None)
    if not threads:
      return results
    return results | 'Await results' >> beam.ParDo(_AwaitChunks(2 * threads))
