"""Continuous evaluation: prediction log + late ground truth -> metrics.

The book's continued-model-evaluation pattern as one composite transform:

  prediction lines --ParsePredictions--\
                                        JoinLabels (CoGroupByKey, latest
  label lines -------ParseLabels-------/  label wins)
      -> scored rows per (model, version) --SliceMetricsFn--> slice records
      -> pairs of versions on shared keys --PairMetricsFn--> comparisons
      -> slice records --Alerts--> alert records
  parsed predictions' profiles --Drift--> drift records (+ their alerts),
      when a baseline is given; no labels needed
  and every rejected row -> dead letters (one shape, with a reason).

The slice and alert records are common.records.evaluation's.
"""
import datetime

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letter import DEAD_LETTER
from transforms.evaluation.alerts import Alerts
from transforms.evaluation.drift import Drift
from transforms.evaluation.join import COMPARISON
from transforms.evaluation.join import JoinLabels
from transforms.evaluation.metrics import ALL
from transforms.evaluation.metrics import PairMetricsFn
from transforms.evaluation.metrics import SliceMetricsFn
from transforms.evaluation.metrics import WINDOW
from transforms.evaluation.rows import ParseLabels
from transforms.evaluation.rows import METRICS_NAMESPACE
from transforms.evaluation.rows import PROFILE
from transforms.evaluation.rows import ParsePredictions

COMPARED_METRICS = ('accuracy', 'macro_precision', 'macro_recall', 'macro_f1',
                    'weighted_f1', 'roc_auc', 'log_loss')


def _iso(epoch):
  return datetime.datetime.fromtimestamp(
      epoch, datetime.timezone.utc).isoformat()


def slice_name(time_slice, period, segment_name, segment_value):
  """A readable slice id: 'all', 'day=2026-01-05', 'window=7d age=35'."""
  name = ALL if time_slice == ALL else f'{time_slice}={period}'
  if segment_name is not None:
    name += f' {segment_name}={segment_value}'
  return name


def slice_records(element, config):
  """((model, version), [(slice key, SliceMetrics)]) -> slice records."""
  (model, version), slices = element
  bounds = {name: (start, end) for name, start, end in config.window_bounds()}
  Metrics.counter(METRICS_NAMESPACE, 'slices').inc(len(slices))
  for (time_slice, period, seg_name, seg_value), counts in slices:
    record = {
        'model': model,
        'model_version': version,
        'slice': slice_name(time_slice, period, seg_name, seg_value),
        'time_slice': time_slice,
        'period': period,
        'segment_name': seg_name,
        'segment_value': seg_value,
    }
    if time_slice == WINDOW:
      start, end = bounds[period]
      record['window_start'], record['window_end'] = _iso(start), _iso(end)
    record.update(counts.metrics())
    yield record


def comparison_record(element):
  """((model, a, b), (metrics a, metrics b)) -> the version comparison."""
  (model, version_a, version_b), (a, b) = element
  Metrics.counter(METRICS_NAMESPACE, 'version_comparisons').inc()
  delta = {m: None if a[m] is None or b[m] is None else b[m] - a[m]
           for m in COMPARED_METRICS}
  return {
      'model': model,
      'version_a': version_a,
      'version_b': version_b,
      'keys': a['labelled'],
      'metrics_a': {m: a[m] for m in COMPARED_METRICS},
      'metrics_b': {m: b[m] for m in COMPARED_METRICS},
      'delta': delta,
  }


class Evaluate(beam.PTransform):
  """(prediction lines, label lines) -> dict of PCollections.

  Keys: 'slices', 'comparisons', 'alerts', 'dead_letters' and, with drift
  on, 'drift' (all records are JSON-ready dicts). Lines are JSON text, one
  row each.
  """

  def __init__(self, config):
    super().__init__()
    self._config = config

  def expand(self, inputs):
    prediction_lines, label_lines = inputs
    c = self._config
    predictions = prediction_lines | 'ParsePredictions' >> beam.ParDo(
        ParsePredictions(c)).with_outputs(DEAD_LETTER, PROFILE, main='parsed')
    labels = label_lines | 'ParseLabels' >> beam.ParDo(
        ParseLabels(c)).with_outputs(DEAD_LETTER, main='parsed')
    joined = ((predictions.parsed, labels.parsed)
              | 'JoinLabels' >> JoinLabels(c))
    slices = (
        joined.scored
        | 'MetricsPerVersion' >> beam.CombinePerKey(SliceMetricsFn(c))
        | 'SliceRecords' >> beam.FlatMap(slice_records, c))
    comparisons = (
        joined[COMPARISON]
        | 'MetricsPerVersionPair' >> beam.CombinePerKey(PairMetricsFn())
        | 'ComparisonRecords' >> beam.Map(comparison_record))
    alerts = slices | 'Alerts' >> Alerts(c.alert_rules, c.alert_min_labelled)
    dead_letters = (
        (predictions[DEAD_LETTER], labels[DEAD_LETTER], joined[DEAD_LETTER])
        | 'DeadLetters' >> beam.Flatten())
    out = {'slices': slices, 'comparisons': comparisons, 'alerts': alerts,
           'dead_letters': dead_letters}
    if c.drift:
      drift = predictions[PROFILE] | 'Drift' >> Drift(c)
      out['drift'] = drift['drift']
      out['alerts'] = ((alerts, drift['alerts'])
                       | 'MetricAndDriftAlerts' >> beam.Flatten())
    return out
