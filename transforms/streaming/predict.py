"""Keyed records -> prediction records, one model version: Beam's
RunInference in streaming.

The batch job's SignatureModelHandler runs under RunInference as it is,
wrapped in a KeyedModelHandler; its `max_batch_duration_secs` makes Beam
batch across bundles with state and a processing-time timer (BatchElements'
stateful path), so a batch is sent to the model when it is full or when its
first record has waited that long, whichever comes first. Results are
formatted by the batch job's own step (FormatPredictionChunks), one record
per chunk, so the records, dead letters (`inference_failed`) and
prediction-log entries are the batch job's.
"""
import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler
from apache_beam.ml.inference.base import RunInference

from transforms.inference.predictions import LOG
from transforms.inference.predictions import FormatPredictionChunks
from transforms.record_chunks import Unchunk


def as_chunk(element):
  """One element as a chunk of one (transforms.record_chunks)."""
  return [element]


class FormatPredictions(beam.PTransform):
  """(key, PredictionResult) -> FormatPredictionChunks' outputs, with
  `predictions` as records one by one (`log` stays chunks, as
  WritePredictionLog takes them)."""

  def __init__(self, passthrough_fields, model_name, input_fields):
    super().__init__()
    self._format = FormatPredictionChunks(passthrough_fields, model_name,
                                          input_fields)

  def expand(self, results):
    formatted = (results
                 | 'As chunks' >> beam.Map(as_chunk)
                 | 'Format' >> self._format)
    records = formatted.predictions | 'Records' >> Unchunk()
    return {'predictions': records,
            'dead_letter': formatted.dead_letter,
            'log': formatted[LOG]}


class PredictStream(beam.PTransform):
  """(key, record) -> {'predictions': prediction records, 'dead_letter',
  'log'}: RunInference with `handler` (a SignatureModelHandler built with
  max_batch_duration_secs), formatted as FormatPredictions."""

  def __init__(self, handler, passthrough_fields=(), model_name=None,
               input_fields=None):
    super().__init__()
    self._handler = handler
    self._format = FormatPredictions(passthrough_fields, model_name,
                                     input_fields)

  def expand(self, keyed):
    return (keyed
            | 'RunInference' >> RunInference(KeyedModelHandler(self._handler))
            | 'Format' >> self._format)
