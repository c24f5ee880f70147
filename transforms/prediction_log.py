"""Writes the sampled prediction log that continuous evaluation reads.

Input elements are what a serving pipeline has after inference:
  (key, {"instance": {feature: value}  # what was sent to the model
         "prediction": {output: value},
         "model": str, "model_version": str,
         "time": ISO-8601 UTC str})
Keys outside the deterministic `sample_rate` sample are dropped; the others
become rows of the book's prediction-log table (models/prediction_log_row.py),
written as JSON lines under `prefix`.
"""
import json

import apache_beam as beam
from apache_beam.metrics import Metrics

from models.prediction_log_row import log_row
from models.prediction_log_row import sampled
from transforms.json_safe import json_safe

METRICS_NAMESPACE = 'prediction_log'


class _ToLogRows(beam.DoFn):
  """Samples by key and builds rows; per element: one hash, one dict."""

  def __init__(self, sample_rate):
    self._rate = sample_rate
    self._logged = Metrics.counter(METRICS_NAMESPACE, 'logged')
    self._skipped = Metrics.counter(METRICS_NAMESPACE, 'not_sampled')

  def process(self, element):
    key, record = element
    if not sampled(key, self._rate):
      self._skipped.inc()
      return
    self._logged.inc()
    yield log_row(record['model'], record['model_version'], key,
                  json_safe(record['instance']),
                  json_safe(record['prediction']), record['time'])


class PredictionLogRows(beam.PTransform):
  """(key, prediction record) -> sampled prediction-log row dicts.

  Separate from the writer so other sinks (BigQuery) can take the rows.
  """

  def __init__(self, sample_rate=1.0):
    super().__init__()
    if not 0 <= sample_rate <= 1:
      raise ValueError(f'sample_rate must be in [0, 1], got {sample_rate}')
    self._rate = sample_rate

  def expand(self, pcoll):
    return pcoll | 'SampleAndBuild' >> beam.ParDo(_ToLogRows(self._rate))


class WritePredictionLog(beam.PTransform):
  """Samples, builds and writes prediction-log rows as JSON lines.

  Files are `<prefix>-SSSSS-of-NNNNN.jsonl`; returns the written file names.
  """

  def __init__(self, prefix, sample_rate=1.0, num_shards=0):
    super().__init__()
    self._prefix = prefix
    self._rate = sample_rate
    self._num_shards = num_shards

  def expand(self, pcoll):
    return (
        pcoll
        | 'Rows' >> PredictionLogRows(self._rate)
        | 'ToJson' >> beam.Map(json.dumps, ensure_ascii=False)
        | 'Write' >> beam.io.WriteToText(
            self._prefix, file_name_suffix='.jsonl',
            num_shards=self._num_shards))
