"""The rows an evaluation run writes: slice metrics and alerts.

Slice record (one per model, version and slice; transforms.evaluation):
  {"model", "model_version", "slice", "time_slice": day|week|month|all|window,
   "period", "segment_name", "segment_value", "window_start"?, "window_end"?,
   "count", "labelled", "label_coverage", "accuracy", "macro_precision",
   "macro_recall", "macro_f1", "weighted_f1",
   "per_class": [{"label", "precision", "recall", "f1", "support"}],
   "confusion_matrix": {"labels": [...], "matrix": [[true x predicted]]},
   "roc_auc", "log_loss", "brier_score", "ece",
   "calibration": [{"bin", "lower", "upper", "count", "mean_predicted",
                    "fraction_positive"}]}   (null where undefined)
A metrics table holds one row per slice record of a run, with the run's
`as_of` (the end of its trailing windows), which it is partitioned on.

Drift record (one per model, version, window, slice, statistic and
measure; transforms.evaluation.drift): DRIFT_SHAPE's fields.

Alert record (one per rule and slice where it fires): the slice's identity,
the rule, the metric's value and threshold; drop rules add the previous
period, its value and the drop.
"""
import json

from common.schema import Field
from common.schema import Shape

METRICS_PARTITION = 'as_of'
METRICS_SHAPE = Shape('metrics', (
    Field('model', 'string', required=True),
    Field('model_version', 'string', required=True),
    Field('slice', 'string', required=True),
    Field('time_slice', 'string', required=True),
    Field('period', 'string'),
    Field('segment_name', 'string'),
    Field('segment_value', 'string'),
    Field('window_start', 'timestamp'),
    Field('window_end', 'timestamp'),
    Field('count', 'int'),
    Field('labelled', 'int'),
    Field('label_coverage', 'float'),
    Field('accuracy', 'float'),
    Field('macro_precision', 'float'),
    Field('macro_recall', 'float'),
    Field('macro_f1', 'float'),
    Field('weighted_f1', 'float'),
    Field('per_class', 'record', depth=1, fields=(
        Field('label', 'string'), Field('precision', 'float'),
        Field('recall', 'float'), Field('f1', 'float'),
        Field('support', 'int'))),
    Field('confusion_matrix', 'json',
          description='JSON {"labels": [...], "matrix": [[...]]}'),
    Field('roc_auc', 'float'),
    Field('log_loss', 'float'),
    Field('brier_score', 'float'),
    Field('ece', 'float', description='expected calibration error, 10 bins'),
    Field('calibration', 'json',
          description='JSON [{"bin", "lower", "upper", "count", '
          '"mean_predicted", "fraction_positive"}]: the reliability diagram'),
    Field(METRICS_PARTITION, 'timestamp', required=True,
          description='the end of the evaluation run\'s trailing windows'),
), partition=METRICS_PARTITION, key_field='slice')


def metrics_row(slice_record, as_of):
  """A slice record as a row of METRICS_SHAPE (the confusion matrix, nested
  arrays a table cannot hold, as JSON text)."""
  row = {name: slice_record.get(name) for name in METRICS_SHAPE.names}
  row['confusion_matrix'] = json.dumps(slice_record.get('confusion_matrix'))
  row['calibration'] = json.dumps(slice_record.get('calibration'))
  if row['segment_value'] is not None:
    row['segment_value'] = str(row['segment_value'])
  row[METRICS_PARTITION] = as_of
  return row


DRIFT_PARTITION = 'window_start'
DRIFT_SHAPE = Shape('drift', (
    Field('model', 'string', required=True),
    Field('model_version', 'string', required=True),
    Field('window_start', 'timestamp', required=True),
    Field('window_end', 'timestamp', required=True),
    Field('slice', 'string', required=True,
          description='all, or role=shadow for shadow predictions'),
    Field('feature', 'string', required=True,
          description='the statistic (e.g. reviews_chars) or model output'),
    Field('metric', 'string', required=True, description='psi, js or ks'),
    Field('value', 'float', required=True),
    Field('threshold', 'float', description='null: no --drift rule'),
    Field('alert', 'bool', required=True),
    Field('rule', 'string'),
    Field('count', 'int', description='rows of the window with the statistic'),
), partition=DRIFT_PARTITION, key_field='feature')


def drift_record(model, version, window, slice_name, feature, metric, value,
                 count, rule):
  """A drift record; `window` is (start, end) ISO-8601, `rule` the drift
  rule (transforms.evaluation.alerts.Rule) that applies, or None."""
  return {
      'model': model, 'model_version': version,
      'window_start': window[0], 'window_end': window[1],
      'slice': slice_name, 'feature': feature, 'metric': metric,
      'value': value, 'count': count,
      'threshold': None if rule is None else rule.threshold,
      'rule': None if rule is None else rule.text,
      'alert': bool(rule is not None and rule.fires(value)),
  }


def drift_alert_record(drift):
  """The alert record of a drift record whose rule fired."""
  return {
      'model': drift['model'], 'model_version': drift['model_version'],
      'slice': f'window={drift["window_start"]} {drift["slice"]}',
      'time_slice': 'drift_window', 'period': drift['window_start'],
      'segment_name': None, 'segment_value': None,
      'metric': f'{drift["feature"]}:{drift["metric"]}',
      'value': drift['value'], 'rule': drift['rule'], 'kind': 'drift',
      'threshold': drift['threshold'], 'labelled': None,
  }


def gate_record(rule, slice_record, value, baseline, drop, failed):
  """The decision of a gate (a rule `... drop>X vs VERSION`) on one version's
  slice against the baseline version's same slice: pass or fail, with the
  figures. `kind` is 'gate'; a failed gate is an alert (--fail_on_alert)."""
  out = alert_record(rule, slice_record, value)
  out.update({
      'kind': 'gate', 'decision': 'fail' if failed else 'pass',
      'baseline_version': baseline['model_version'],
      'baseline_value': rule.value(baseline, 0), 'drop': drop})
  return out


def is_alert(record):
  """Whether an alert record is an alert (a gate that passed is not)."""
  return record.get('decision') != 'pass'


def alert_record(rule, slice_record, value, previous=None, drop=None):
  """The alert record of `rule` (transforms.evaluation.alerts.Rule) firing
  on a slice record; for drop rules `drop` is what crossed the threshold."""
  out = {
      'model': slice_record['model'],
      'model_version': slice_record['model_version'],
      'slice': slice_record['slice'],
      'time_slice': slice_record['time_slice'],
      'period': slice_record['period'],
      'segment_name': slice_record['segment_name'],
      'segment_value': slice_record['segment_value'],
      'metric': rule.metric_name,
      'value': value,
      'rule': rule.text,
      'kind': 'drop' if rule.drop else 'threshold',
      'threshold': rule.threshold,
      'labelled': slice_record['labelled'],
  }
  if previous is not None:
    out['previous_period'] = previous['period']
    out['previous_value'] = rule.value(previous, 0)
    out['drop'] = drop
  return out
