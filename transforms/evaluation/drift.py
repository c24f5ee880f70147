"""Drift: how far each window of the prediction log is from the baseline.

Needs no labels: every parsed prediction row contributes its profile
(common.feature_stats: text lengths, OOV rate, numeric and categorical
inputs, the model's numeric outputs), whether or not it is ever labelled.

  profiles --BinProfiles (the baseline's bins)--> {statistic: bin}
    keyed by (model, version, slice, fixed window of --window)
  --Histograms (CombineFn: bin counts, mergeable, lifted before the shuffle)
  --DriftRecords--> one record per statistic and measure (PSI, JS, and KS for
    ordered bins) against the baseline's counts, with the --drift rule that
    applies (a statistic's own rule wins over a general one) and whether it
    fired.

The baseline is the loaded baseline_stats.json (the rows come binned from
ParsePredictions), or one built from a reference window of the log itself
(--baseline_window), a side input, by the same
common.feature_stats.build_baseline the baseline writer uses, from a sample
of at most BASELINE_SAMPLE of that window's rows (exact below that size).
"""
import datetime

import apache_beam as beam
from apache_beam.metrics import Metrics

from common import drift_measures
from common import feature_stats
from common.records.evaluation import drift_alert_record
from common.records.evaluation import drift_record
from transforms.evaluation.config import parse_window_spec
from transforms.evaluation.config import window_starts
from transforms.evaluation.metrics import merge_keyed
from transforms.evaluation.rows import METRICS_NAMESPACE

BASELINE_SAMPLE = 100_000
ORDERED = (feature_stats.NUMERIC, feature_stats.PROBABILITY)


def _iso(epoch):
  return datetime.datetime.fromtimestamp(
      epoch, datetime.timezone.utc).isoformat()


def measures_of(spec):
  """The drift measures defined on a statistic's bins."""
  if spec['kind'] in ORDERED:
    return drift_measures.MEASURES
  return tuple(m for m in drift_measures.MEASURES if m != 'ks')


def rule_for(rules, feature, metric):
  """The drift rule for (statistic, measure): its own, else a general one."""
  general = None
  for rule in rules:
    if rule.metric != metric:
      continue
    if rule.feature == feature:
      return rule
    if rule.feature is None and general is None:
      general = rule
  return general


def _add_counts(mine, theirs):
  for b, n in theirs.items():
    mine[b] = mine.get(b, 0) + n


def window_baseline(profiles):
  """A baseline from sampled (profile, output names) pairs of the log."""
  outputs = {name for _, names in profiles for name in names}
  return feature_stats.build_baseline(
      [p for p, _ in profiles], outputs, None,
      f'a window of the prediction log ({len(profiles)} rows sampled)')


class _BinProfiles(beam.DoFn):
  """(slice key, epoch, profile, outputs) -> ((slice key, window), bins)."""

  def __init__(self, size, period):
    self._size, self._period = size, period
    self._baseline = self._binner = None

  def setup(self):
    self._unbinned = Metrics.counter(METRICS_NAMESPACE, 'drift_rows_no_stats')

  def process(self, element, baseline):
    if baseline is not self._baseline:
      self._baseline, self._binner = baseline, feature_stats.Binner(baseline)
    key, epoch, row_profile, _ = element
    bins = self._binner(row_profile)
    if not bins:
      self._unbinned.inc()
      return
    for start in window_starts(epoch, self._size, self._period):
      yield key + (start,), bins


class HistogramFn(beam.CombineFn):
  """{statistic: bin} rows -> {statistic: {bin: count}}: sums, so partial
  histograms of any bundles merge exactly."""

  def create_accumulator(self):
    return {}

  def add_input(self, accumulator, bins):
    for name, b in bins.items():
      counts = accumulator.get(name)
      if counts is None:
        counts = accumulator[name] = {}
      counts[b] = counts.get(b, 0) + 1
    return accumulator

  def merge_accumulators(self, accumulators):
    return merge_keyed(accumulators, _add_counts, dict)

  def extract_output(self, accumulator):
    return accumulator


def drift_records(element, baseline, rules, size):
  """((model, version, slice, window start), histograms) -> drift records."""
  (model, version, slice_name, start), histograms = element
  window = (_iso(start), _iso(start + size))
  Metrics.counter(METRICS_NAMESPACE, 'drift_windows').inc()
  for name, spec in sorted(baseline['statistics'].items()):
    if name not in histograms or not sum(spec['counts']):
      continue
    current = [histograms[name].get(b, 0)
               for b in range(feature_stats.n_bins(spec))]
    count = sum(current)
    for metric in measures_of(spec):
      value = drift_measures.measure(metric, spec['counts'], current)
      yield drift_record(model, version, window, slice_name, name, metric,
                         value, count, rule_for(rules, name, metric))


class Drift(beam.PTransform):
  """ParsePredictions' PROFILE output -> {'drift': drift records, 'alerts':
  drift alert records}: binned rows with a baseline file, profiles with a
  baseline window (transforms/evaluation/rows.py)."""

  def __init__(self, config):
    super().__init__()
    self._config = config

  def _window_baseline(self, profiles):
    start, end = self._config.baseline_window
    return (profiles
            | 'InBaselineWindow' >> beam.Filter(
                lambda e: start <= e[1] < end)
            | 'ProfileAndOutputs' >> beam.Map(lambda e: (e[2], e[3]))
            | 'SampleBaseline' >> beam.combiners.Sample.FixedSizeGlobally(
                BASELINE_SAMPLE)
            | 'BuildBaseline' >> beam.Map(window_baseline))

  def expand(self, rows):
    c = self._config
    size, period = parse_window_spec(c.drift_window)
    if c.baseline is not None:
      binned, baseline = rows, c.baseline
    else:
      baseline = beam.pvalue.AsSingleton(self._window_baseline(rows))
      binned = rows | 'BinProfiles' >> beam.ParDo(
          _BinProfiles(size, period), baseline)
    drift = (
        binned
        | 'Histograms' >> beam.CombinePerKey(HistogramFn())
        | 'DriftRecords' >> beam.FlatMap(drift_records, baseline,
                                         c.drift_rules, size))
    alerts = (drift
              | 'Fired' >> beam.Filter(lambda d: d['alert'])
              | 'DriftAlerts' >> beam.Map(drift_alert_record))
    return {'drift': drift, 'alerts': alerts}
