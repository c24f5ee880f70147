"""Alert rules over slice metrics: the retraining trigger.

Rules are small strings, given once per --alert:
  'macro_f1<0.80'          absolute: fires on every slice where it holds
  'recall[positive]<0.7'   a per-class metric
  'accuracy drop>0.05'     drop: previous calendar period's value minus this
                           one's (same model, version, slice type, segment);
                           the previous period is the latest earlier one with
                           a value
  'accuracy drop>0.02 vs sentiment/1'
                           a gate (TFMA's change threshold): each other
                           version of the model against the named baseline
                           version ('vs previous': the version before it),
                           on every all-time and trailing-window slice both
                           have; every decision, pass or fail, is a record
  'text_chars:js>0.1'      drift (--drift): a drift measure (psi, js, ks) of
  'psi>0.2'                one statistic, or of every statistic without the
                           prefix; a statistic's own rule wins over the
                           general one (transforms/evaluation/drift.py)
Every firing (and every gate decision, pass or fail) is an alert record
naming model, version, slice, metric, value and threshold; every rule also
counts fired / passed / not_evaluable in the `evaluation_alerts` metrics
namespace, so a rule that never fires because its
metric was never defined (no labels) shows up too. Nothing is silent.
"""
import dataclasses
import operator
import re

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.records.evaluation import alert_record
from common.records.evaluation import gate_record
from transforms.evaluation.join import version_order

METRICS_NAMESPACE = 'evaluation_alerts'
SCALAR_METRICS = ('count', 'labelled', 'label_coverage', 'accuracy',
                  'macro_precision', 'macro_recall', 'macro_f1',
                  'weighted_f1', 'roc_auc', 'log_loss')
CLASS_METRICS = ('precision', 'recall', 'f1', 'support')
# Defined without labels, so --alert_min_labelled does not gate them.
LABEL_FREE = ('count', 'labelled', 'label_coverage')
CALENDAR = ('day', 'week', 'month')
OPS = {'<': operator.lt, '<=': operator.le, '>': operator.gt,
       '>=': operator.ge}
DRIFT_METRICS = ('psi', 'js', 'ks')
_RULE = re.compile(
    r'^\s*(?:(?P<feature>[A-Za-z0-9_.]+):)?'
    r'(?P<metric>[a-z_0-9]+)(?:\[(?P<label>[^\]]+)\])?\s*'
    r'(?P<drop>drop)?\s*(?P<op><=|>=|<|>)\s*(?P<threshold>\S+)'
    r'(?:\s+vs\s+(?P<baseline>\S+))?\s*$')
PREVIOUS = 'previous'
GATE_SLICES = ('all', 'window')


@dataclasses.dataclass(frozen=True)
class Rule:
  text: str
  metric: str
  label: str | None
  op: str
  threshold: float
  drop: bool
  feature: str | None = None  # drift rules: the statistic, None for all
  baseline: str | None = None  # gates: a model version, or PREVIOUS

  @property
  def metric_name(self):
    return f'{self.metric}[{self.label}]' if self.label else self.metric

  def value(self, record, min_labelled):
    """The rule's metric on a slice record, or None where undefined."""
    if self.metric not in LABEL_FREE and record['labelled'] < min_labelled:
      return None
    if self.label is None:
      return record.get(self.metric)
    for c in record['per_class']:
      if c['label'] == self.label:
        return c[self.metric]
    return None

  def fires(self, value):
    return OPS[self.op](value, self.threshold)


def _match(text):
  match = _RULE.match(text)
  if not match:
    raise ValueError(
        f'{text!r} is not METRIC<VALUE, METRIC[LABEL]<VALUE, '
        'METRIC drop>VALUE or [STATISTIC:]DRIFT>VALUE (operators < <= > >=)')
  return match


def _threshold(text, match):
  try:
    return float(match.group('threshold'))
  except ValueError:
    raise ValueError(
        f'{text!r}: threshold {match.group("threshold")!r} is not a number'
    ) from None


def parse_drift_rule(text):
  """'text_chars:js>0.1' or 'psi>0.2' -> Rule (a drift rule); raises
  ValueError saying what is wrong."""
  match = _match(text)
  if match.group('metric') not in DRIFT_METRICS:
    raise ValueError(f'{text!r}: unknown drift measure '
                     f'{match.group("metric")!r}; use one of '
                     f'{", ".join(DRIFT_METRICS)}')
  if match.group('label') or match.group('drop') or match.group('baseline'):
    raise ValueError(f'{text!r}: a drift rule is [STATISTIC:]MEASURE>VALUE')
  return Rule(text.strip(), match.group('metric'), None, match.group('op'),
              _threshold(text, match), False, match.group('feature'))


def parse_rule(text):
  """'macro_f1<0.80' -> Rule; raises ValueError saying what is wrong."""
  match = _match(text)
  metric, label = match.group('metric'), match.group('label')
  if match.group('feature'):
    raise ValueError(f'{text!r}: a STATISTIC: prefix belongs to a drift '
                     'rule (--drift)')
  known = CLASS_METRICS if label else SCALAR_METRICS
  if metric not in known:
    kind = 'per-class metric' if label else 'metric'
    raise ValueError(f'{text!r}: unknown {kind} {metric!r}; '
                     f'use one of {", ".join(known)}')
  baseline = match.group('baseline')
  if baseline and not match.group('drop'):
    raise ValueError(f'{text!r}: a gate against a version is METRIC '
                     'drop>VALUE vs VERSION (or vs previous)')
  return Rule(text.strip(), metric, label, match.group('op'),
              _threshold(text, match), bool(match.group('drop')),
              baseline=baseline)


class _Counts:
  """fired / passed / not_evaluable counters of one rule."""

  def __init__(self, rule):
    name = lambda outcome: f'{rule.text} | {outcome}'
    self.fired = Metrics.counter(METRICS_NAMESPACE, name('fired'))
    self.passed = Metrics.counter(METRICS_NAMESPACE, name('passed'))
    self.not_evaluable = Metrics.counter(METRICS_NAMESPACE,
                                         name('not_evaluable'))


class _Thresholds(beam.DoFn):

  def __init__(self, rules, min_labelled):
    self._rules = [r for r in rules if not r.drop]
    self._min = min_labelled

  def setup(self):
    self._counts = [_Counts(r) for r in self._rules]

  def process(self, record):
    for rule, counts in zip(self._rules, self._counts):
      value = rule.value(record, self._min)
      if value is None:
        counts.not_evaluable.inc()
      elif rule.fires(value):
        counts.fired.inc()
        yield alert_record(rule, record, value)
      else:
        counts.passed.inc()


class _Drops(beam.DoFn):
  """One series (model, version, calendar slice type, segment) at a time."""

  def __init__(self, rules, min_labelled):
    self._rules = [r for r in rules if r.drop and r.baseline is None]
    self._min = min_labelled

  def setup(self):
    self._counts = [_Counts(r) for r in self._rules]

  def process(self, element):
    _, records = element
    records = sorted(records, key=lambda r: r['period'])
    for rule, counts in zip(self._rules, self._counts):
      previous = None
      for record in records:
        value = rule.value(record, self._min)
        if value is None or previous is None:
          counts.not_evaluable.inc()
        else:
          drop = rule.value(previous, self._min) - value
          if rule.fires(drop):
            counts.fired.inc()
            yield alert_record(rule, record, value, previous, drop)
          else:
            counts.passed.inc()
        if value is not None:
          previous = record


class _Gates(beam.DoFn):
  """One model's slices of a kind (all-time or a trailing window, segment)
  across its versions: each version against the rule's baseline version."""

  def __init__(self, rules, min_labelled):
    self._rules = [r for r in rules if r.baseline is not None]
    self._min = min_labelled

  def setup(self):
    self._counts = [_Counts(r) for r in self._rules]

  def process(self, element):
    _, records = element
    by_version = {r['model_version']: r for r in records}
    ordered = sorted(by_version, key=version_order)
    for rule, counts in zip(self._rules, self._counts):
      for i, version in enumerate(ordered):
        baseline = (ordered[i - 1] if i else None) if (
            rule.baseline == PREVIOUS) else rule.baseline
        if baseline == version or (baseline is None and i == 0):
          continue  # the baseline itself, or nothing before the first
        record = by_version[version]
        value = rule.value(record, self._min)
        reference = by_version.get(baseline)
        before = None if reference is None else rule.value(reference,
                                                           self._min)
        if value is None or before is None:
          counts.not_evaluable.inc()
          continue
        failed = rule.fires(before - value)
        (counts.fired if failed else counts.passed).inc()
        yield gate_record(rule, record, value, reference, before - value,
                          failed)


class Alerts(beam.PTransform):
  """Slice records -> alert records, one per (rule, slice) that fires."""

  def __init__(self, rules, min_labelled=1):
    super().__init__()
    self._rules = tuple(rules)
    self._min = min_labelled

  def expand(self, records):
    absolute = records | 'Thresholds' >> beam.ParDo(
        _Thresholds(self._rules, self._min))
    drops = (
        records
        | 'CalendarSlices' >> beam.Filter(
            lambda r: r['time_slice'] in CALENDAR)
        | 'BySeries' >> beam.Map(lambda r: (
            (r['model'], r['model_version'], r['time_slice'],
             r['segment_name'], r['segment_value']), r))
        | 'GroupSeries' >> beam.GroupByKey()
        | 'Drops' >> beam.ParDo(_Drops(self._rules, self._min)))
    gates = (
        records
        | 'GateSlices' >> beam.Filter(lambda r: r['time_slice'] in GATE_SLICES)
        | 'ByModelSlice' >> beam.Map(lambda r: ((r['model'], r['slice']), r))
        | 'GroupVersions' >> beam.GroupByKey()
        | 'Gates' >> beam.ParDo(_Gates(self._rules, self._min)))
    return (absolute, drops, gates) | 'AllAlerts' >> beam.Flatten()
