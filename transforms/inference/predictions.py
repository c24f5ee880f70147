"""Model results -> keyed prediction records (common.records.prediction),
prediction-log entries and dead letters for the model's failures.
"""
import datetime
import time
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.event_time import BadTimestamp
from common.event_time import parse_timestamp
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


def event_time(record, field):
  """The record's own time in `field` (ISO-8601 with an offset, or epoch
  seconds) as ISO-8601 UTC text, or None when it is unusable."""
  try:
    return datetime.datetime.fromtimestamp(
        parse_timestamp(record.get(field)), datetime.timezone.utc).isoformat()
  except BadTimestamp:
    return None


LOG = 'log'


# Output type declared: Beam would infer it from the bytecode at every
# pipeline construction (benchmarks/optimisations.md: the costliest inference
# of the job) and find nothing more precise than Any (chunks, tagged outputs).
@beam.typehints.with_output_types(typing.Any)
class _FormatPredictionChunk(beam.DoFn):

  def __init__(self, passthrough_fields, model_name, input_fields,
               log_time_field=None):
    self._passthrough = tuple(passthrough_fields or ())
    self._model = model_name
    self._fields = tuple((input_fields or {}).items())
    self._time_field = log_time_field
    self._predicted = Metrics.counter('output', 'predictions')
    self._bad_time = Metrics.counter('prediction_log', 'log_time_unusable')

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
        logged.append((key, log_entry(result, self._model, self._fields,
                                      self._log_time(result.example, now))))
    if out:
      self._predicted.inc(len(out))
      yield out
    if logged:
      yield beam.pvalue.TaggedOutput(LOG, logged)

  def _log_time(self, record, now):
    if self._time_field is None:
      return now
    time = event_time(record, self._time_field)
    if time is None:
      self._bad_time.inc()
      return now
    return time


class FormatPredictionChunks(beam.PTransform):
  """Chunks of (key, PredictionResult) -> outputs `predictions` (chunks of
  prediction records), `dead_letter` (model failures) and, when model_name
  is given,
  `log` (chunks of (key, entry) for WritePredictionLog, one entry per
  prediction).

  `log_time_field`: the records' field whose time the log entries carry
  instead of the run's (a replayed history); a record without a usable one
  is logged at the run's time and counted (prediction_log:
  log_time_unusable).

  A chunk at a time (transforms.record_chunks says why): the batch job's
  hot path formats one list per model batch.
  """

  def __init__(self, passthrough_fields=(), model_name=None,
               input_fields=None, log_time_field=None):
    super().__init__()
    self._fn = _FormatPredictionChunk(passthrough_fields, model_name,
                                      input_fields, log_time_field)

  def expand(self, chunks):
    return chunks | beam.ParDo(self._fn).with_outputs(
        DEAD_LETTER, LOG, main='predictions')


class PredictChunks(beam.PTransform):
  """Chunks of valid (key, record) -> FormatPredictionChunks' outputs:
  RunInference over chunks (RunChunkInference: handler, threads), then the
  records. passthrough_fields, model_name, input_fields: as
  FormatPredictionChunks."""

  def __init__(self, handler, threads, passthrough_fields, model_name,
               input_fields, log_time_field=None):
    super().__init__()
    self._infer = RunChunkInference(handler, threads)
    self._format = FormatPredictionChunks(passthrough_fields, model_name,
                                          input_fields, log_time_field)

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
