"""Record chunks: a list of records as one Beam element, on hot paths.

Why: Beam's Python SDK spends about 1-2 us of bookkeeping per element per
step (windowed values, receivers, counters, timestamps) whatever the step
does. A batch job that takes each record through reading, keying, checking,
inference, formatting and writing pays that ten times per record, which
costs more CPU than the model itself on small text models (issue #9:
benchmarks/optimisations.md). Moving lists of records (one element per model
batch) pays it once per list, while every rule still applies record by record
through the same functions the per-record transforms use.

A chunk is a plain Python list; an empty chunk is never emitted.
"""
import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

DEFAULT_CHUNK_SIZE = 256


class _ChunkPerBundle(beam.DoFn):
  """Buffers up to `size` elements of a bundle into one list; with
  `lists`, the elements are lists whose items are buffered.

  Only for the global window (batch): emitting from finish_bundle needs the
  window, and there is only one.
  """

  def __init__(self, size, lists=False):
    self._size = size
    self._lists = lists

  def start_bundle(self):
    self._chunk = []

  def process(self, element):
    if self._lists:
      self._chunk.extend(element)
    else:
      self._chunk.append(element)
    while len(self._chunk) >= self._size:
      chunk, self._chunk = (self._chunk[:self._size],
                            self._chunk[self._size:])
      yield chunk

  def finish_bundle(self):
    if self._chunk:
      yield GlobalWindows.windowed_value(self._chunk)
      self._chunk = []


class ChunkRecords(beam.PTransform):
  """element -> lists of up to `size` elements (per bundle, global window);
  in any other windowing each element becomes a list of one, so windows and
  timestamps are kept."""

  def __init__(self, size=DEFAULT_CHUNK_SIZE):
    super().__init__()
    self._size = size

  def expand(self, pcoll):
    if isinstance(pcoll.windowing.windowfn, GlobalWindows):
      return pcoll | beam.ParDo(_ChunkPerBundle(self._size))
    return pcoll | beam.Map(lambda element: [element])


class Rechunk(beam.PTransform):
  """Chunks -> chunks of `size` (per bundle, global window; the last of a
  bundle may be smaller): e.g. the few records a step keeps of each chunk,
  gathered into full batches for the next model. In any other windowing the
  chunks pass as they are."""

  def __init__(self, size):
    super().__init__()
    self._size = size

  def expand(self, chunks):
    if isinstance(chunks.windowing.windowfn, GlobalWindows):
      return chunks | beam.ParDo(_ChunkPerBundle(self._size, lists=True))
    return chunks


class Unchunk(beam.PTransform):
  """Lists of elements -> the elements, for steps that take one at a time
  (typed file writers, BigQuery)."""

  def expand(self, chunks):
    return chunks | beam.FlatMap(lambda chunk: chunk)
