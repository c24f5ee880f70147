"""The keyed prediction record: its shape, its formatting and its schemas.

Output contract (one per accepted input, key first):
  {"key", "model_version", "predictions": {output name: value},
   "predicted_at": ISO-8601 UTC, <passthrough fields>...}
Output tensors of shape [N, 1] become scalars, longer ones lists.
"""
import datetime
import json
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject
from transforms.inference.signature_handler import InferenceFailure
from common.json_safe import json_safe

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


def prediction_record(key, result, passthrough_fields, predicted_at):
  """The output record of one successful (key, PredictionResult)."""
  out = {'key': key, 'model_version': result.model_id,
         'predictions': result.inference, 'predicted_at': predicted_at}
  for field in passthrough_fields:
    out[field] = json_safe(result.example.get(field))
  return out


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
      out.append(prediction_record(key, result, self._passthrough, now))
      if self._model:
        logged.append((key, log_entry(result, self._model, self._fields, now)))
    if out:
      self._predicted.inc(len(out))
      yield out
    if logged:
      yield beam.pvalue.TaggedOutput(LOG, logged)


class FormatPredictionChunks(beam.PTransform):
  """Chunks of (key, PredictionResult) -> outputs `main` (chunks of output
  records), `dead_letter` (model failures) and, when model_name is given,
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
        DEAD_LETTER, LOG, main='main')


_AVRO_TYPES = {'string': 'string', 'bool': 'boolean', 'float16': 'float',
               'float32': 'float', 'float64': 'double', 'int8': 'int',
               'int16': 'int', 'int32': 'int', 'int64': 'long',
               'uint8': 'int', 'uint16': 'int', 'uint32': 'long'}


def _value_rank(spec):
  """Rank of one instance's value after [N, 1] -> scalar squeezing."""
  shape = spec.shape
  if len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1):
    return 0
  return len(shape) - 1


def stringify_passthrough(record, passthrough_fields):
  """Typed formats (Avro, Parquet) store passthrough fields as strings:
  their types are unknown until records are read. Non-strings become JSON."""
  if not passthrough_fields:
    return record
  out = dict(record)
  for field in passthrough_fields:
    value = out.get(field)
    if value is not None and not isinstance(value, str):
      out[field] = json.dumps(value, sort_keys=True)
  return out


def avro_schema(output_specs, passthrough_fields=()):
  """The Avro schema of prediction records for a signature's outputs."""
  def nested(base, rank):
    return base if rank == 0 else {'type': 'array', 'items': nested(base, rank - 1)}

  outputs = [{'name': name,
              'type': nested(_AVRO_TYPES.get(spec.dtype, 'double'),
                             _value_rank(spec))}
             for name, spec in output_specs.items()]
  fields = [
      {'name': 'key', 'type': 'string'},
      {'name': 'model_version', 'type': 'string'},
      {'name': 'predictions',
       'type': {'type': 'record', 'name': 'Predictions', 'fields': outputs}},
      {'name': 'predicted_at', 'type': 'string'},
  ] + [{'name': f, 'type': ['null', 'string']} for f in passthrough_fields]
  return {'type': 'record', 'name': 'Prediction',
          'namespace': 'resilient_serving', 'fields': fields}


def arrow_schema(output_specs, passthrough_fields=()):
  """The pyarrow schema of prediction records (for Parquet)."""
  import pyarrow as pa
  types = {'string': pa.string(), 'bool': pa.bool_(), 'float16': pa.float32(),
           'float32': pa.float32(), 'float64': pa.float64(),
           'int8': pa.int32(), 'int16': pa.int32(), 'int32': pa.int32(),
           'int64': pa.int64()}

  def nested(base, rank):
    return base if rank == 0 else pa.list_(nested(base, rank - 1))

  outputs = pa.struct([
      (name, nested(types.get(spec.dtype, pa.float64()), _value_rank(spec)))
      for name, spec in output_specs.items()])
  return pa.schema(
      [('key', pa.string()), ('model_version', pa.string()),
       ('predictions', outputs), ('predicted_at', pa.string())] +
      [(f, pa.string()) for f in passthrough_fields])
