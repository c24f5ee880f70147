"""Writes the sampled prediction log that continuous evaluation reads.

Input elements are chunks (transforms.record_chunks) of what a serving
pipeline has after inference:
  (key, {"instance": {feature: value}  # what was sent to the model
         "prediction": {output: value},
         "model": str, "model_version": str,
         "time": ISO-8601 UTC str,
         "role": "shadow" (optional: a candidate version's prediction)})
Keys outside the deterministic `sample_rate` sample are dropped; the others
become rows of the book's prediction-log table
(common/records/prediction_log.py), written as JSON lines under `prefix`.
Rows are built and serialised a chunk at a time in the stage that formats
the predictions, so logging a prediction costs a dict and a JSON line, not
a runner round trip per record.
"""
import apache_beam as beam
from apache_beam.metrics import Metrics

from common.records.prediction_log import log_row
from common.records.prediction_log import sampled
from common.json_safe import json_safe
from transforms.io.sinks import WriteJsonLineChunks

METRICS_NAMESPACE = 'prediction_log'


class _ToLogRows(beam.DoFn):
  """A chunk of (key, entry) -> the chunk of rows of its sampled keys."""

  def __init__(self, sample_rate):
    self._rate = sample_rate
    self._logged = Metrics.counter(METRICS_NAMESPACE, 'logged')
    self._skipped = Metrics.counter(METRICS_NAMESPACE, 'not_sampled')

  def process(self, chunk):
    rows = [log_row(entry['model'], entry['model_version'], key,
                    json_safe(entry['instance']),
                    json_safe(entry['prediction']), entry['time'],
                    entry.get('role'))
            for key, entry in chunk if sampled(key, self._rate)]
    self._skipped.inc(len(chunk) - len(rows))
    if rows:
      self._logged.inc(len(rows))
      yield rows


class PredictionLogRows(beam.PTransform):
  """Chunks of (key, prediction entry) -> chunks of sampled log-row dicts.

  Separate from the writer so other sinks (BigQuery) can take the rows.
  """

  def __init__(self, sample_rate=1.0):
    super().__init__()
    if not 0 <= sample_rate <= 1:
      raise ValueError(f'sample_rate must be in [0, 1], got {sample_rate}')
    self._rate = sample_rate

  def expand(self, chunks):
    return chunks | 'SampleAndBuild' >> beam.ParDo(_ToLogRows(self._rate))


class WritePredictionLog(beam.PTransform):
  """Samples, builds and writes prediction-log rows as JSON lines, from one
  PCollection of chunks or a tuple of them.

  Files are `<prefix>-SSSSS-of-NNNNN.jsonl`; returns the written file names.
  """

  def __init__(self, prefix, sample_rate=1.0, num_shards=0):
    super().__init__()
    self._prefix = prefix
    self._rate = sample_rate
    self._num_shards = num_shards

  def expand(self, chunks):
    parts = chunks if isinstance(chunks, tuple) else (chunks,)
    rows = tuple(part | f'Rows {i}' >> PredictionLogRows(self._rate)
                 for i, part in enumerate(parts))
    return rows | 'Write' >> WriteJsonLineChunks(self._prefix,
                                                 self._num_shards)
