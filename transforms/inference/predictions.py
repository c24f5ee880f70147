"""Model results -> keyed prediction records (common.records.prediction),
prediction-log entries and dead letters for the model's failures.
"""
import datetime
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.records import prediction
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject
from transforms.inference.chunked import RunChunkInference
from transforms.inference.signature_handler import InferenceFailure
from transforms.record_chunks import Unchunk

STAGE = 'inference'


class _UtcClock:
  """ISO-8601 UTC timestamps, formatted at most once per second."""

  def __init__(self):
    self._second, self._text = None, None

  def now(self):
    second = int(time.time())
    if second != self._second:
      self._second = second
      self._text = datetime.datetime.fromtimestamp(
          second, datetime.timezone.utc).isoformat()
    return self._text


def log_entry(result, model_name, input_fields, logged_at):
  """The prediction-log entry of one successful PredictionResult;
  input_fields: ((signature input, record field), ...)."""
  return {
      'instance': {name: result.example[field] for name, field in input_fields},
      'prediction': result.inference, 'model': model_name,
      'model_version': result.model_id, 'time': logged_at}


LOG = 'log'


class _FormatPredictionChunk(beam.DoFn):

  def __init__(self, passthrough_fields, model_name, input_fields):
    self._passthrough = tuple(passthrough_fields or ())
    self._model = model_name
    self._fields = tuple((input_fields or {}).items())
    self._predicted = Metrics.counter('output', 'predictions')

  def setup(self):
    self._clock = _UtcClock()

  def process(self, chunk):
    now, out, logged = self._clock.now(), [], []
    for key, result in chunk:
      if isinstance(result.inference, InferenceFailure):
        yield reject(key, STAGE, 'inference_failed', result.example,
                     result.inference.error)
        continue
      out.append(prediction.record(key, result.model_id, result.inference,
                                   now, result.example, self._passthrough))
      if self._model:
        logged.append((key, log_entry(result, self._model, self._fields, now)))
    if out:
      self._predicted.inc(len(out))
      yield out
    if logged:
      yield beam.pvalue.TaggedOutput(LOG, logged)


class FormatPredictionChunks(beam.PTransform):
  """Chunks of (key, PredictionResult) -> outputs `predictions` (chunks of
  prediction records), `dead_letter` (model failures) and, when model_name
  is given,
  `log` (chunks of (key, entry) for WritePredictionLog, one entry per
  prediction).

  A chunk at a time (transforms.record_chunks says why): the batch job's
  hot path formats one list per model batch.
  """

  def __init__(self, passthrough_fields=(), model_name=None,
               input_fields=None):
    super().__init__()
    self._fn = _FormatPredictionChunk(passthrough_fields, model_name,
                                      input_fields)

  def expand(self, chunks):
    return chunks | beam.ParDo(self._fn).with_outputs(
        DEAD_LETTER, LOG, main='predictions')


class PredictChunks(beam.PTransform):
  """Chunks of valid (key, record) -> FormatPredictionChunks' outputs:
  RunInference over chunks (RunChunkInference: handler, threads), then the
  records. passthrough_fields, model_name, input_fields: as
  FormatPredictionChunks."""

  def __init__(self, handler, threads, passthrough_fields, model_name,
               input_fields):
    super().__init__()
    self._infer = RunChunkInference(handler, threads)
    self._format = FormatPredictionChunks(passthrough_fields, model_name,
                                          input_fields)

  def expand(self, chunks):
    return chunks | 'Infer' >> self._infer | 'Format' >> self._format


class PredictionRecords(beam.PTransform):
  """Chunks of prediction records, from one PCollection or a tuple of them
  -> the records one by one, passthrough fields as text: what typed files
  and tables take (common.records.prediction)."""

  def __init__(self, passthrough_fields):
    super().__init__()
    self._passthrough = tuple(passthrough_fields)

  def expand(self, chunks):
    parts = chunks if isinstance(chunks, tuple) else (chunks,)
    merged = parts | 'Merge' >> beam.Flatten()
    return (merged
            | 'Records' >> Unchunk()
            | 'Typed passthrough' >> beam.Map(
                prediction.stringify_passthrough, self._passthrough))
