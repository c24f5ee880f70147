"""Continuous evaluation of a stream: the batch Evaluate's parts in event
time, emitting each window's metrics, drift and alerts as it closes.

  prediction lines --ParsePredictions (timestamped at the prediction time)
  label lines ------ParseLabels (at labeled_at; without one, at arrival)
      -> JoinLabelsInEventTime (state and timers, stream_join.py)
      -> windows of config.drift_window (--window: fixed, or sliding)
      -> SliceMetricsFn per (model, version) -> window records
      -> Alerts;
  profiles -> the same windows -> Drift (baseline file only)
  and every rejected row -> dead letters.

Windows fire when the watermark passes their end, then again (accumulating:
each pane is the window's complete record so far, `pane` says which) for
each row that reaches them later: a prediction at the end of a window is
joined a label lateness later, so windows allow twice the lateness (a label
up to the lateness after its prediction, and its prediction flushed a
lateness after that). The last pane of a window equals the batch job's
record of the same rows for that period.
"""
import dataclasses
import datetime
import math

import apache_beam as beam
from apache_beam.transforms import trigger
from apache_beam.transforms import window

from transforms.dead_letter import DEAD_LETTER
from transforms.evaluation.alerts import Alerts
from transforms.evaluation.config import parse_window_spec
from transforms.evaluation.drift import Drift
from transforms.evaluation.evaluate import slice_records
from transforms.evaluation.metrics import SliceMetricsFn
from transforms.evaluation.rows import PROFILE
from transforms.evaluation.rows import ParseLabels
from transforms.evaluation.rows import ParsePredictions
from transforms.evaluation.stream_join import JoinLabelsInEventTime

WINDOW = 'window'
_PANES = {0: 'early', 1: 'on_time', 2: 'late', 3: 'unknown'}


def _iso(epoch):
  return datetime.datetime.fromtimestamp(
      epoch, datetime.timezone.utc).isoformat()


def _at_prediction_time(kv):
  return window.TimestampedValue(kv, kv[1][2])


def _at_label_time(kv):
  labeled_at = kv[1][0]
  return kv if labeled_at == -math.inf else window.TimestampedValue(
      kv, labeled_at)


class _WindowRecords(beam.DoFn):
  """((model, version), slices) of one window pane -> slice records named
  for the window, with the pane's timing."""

  def __init__(self, config):
    self._config = config

  def process(self, element, w=beam.DoFn.WindowParam,
              pane=beam.DoFn.PaneInfoParam):
    start, end = _iso(w.start.micros / 1e6), _iso(w.end.micros / 1e6)
    for record in slice_records(element, self._config):
      segment = record['slice'][len('all'):]
      record.update({
          'time_slice': WINDOW, 'period': start,
          'slice': f'{WINDOW}={start}{segment}',
          'window_start': start, 'window_end': end,
          'pane': _PANES.get(pane.timing, 'unknown')})
      yield record


class _InItsOwnWindow(beam.DoFn):
  """A binned row, one per window holding its prediction and timestamped at
  that window's start, lands in every sliding window holding that instant:
  it is kept only in the one it names."""

  def process(self, element, w=beam.DoFn.WindowParam):
    if w.start.micros == round(element[0][3] * 1_000_000):
      yield element


class EvaluateStream(beam.PTransform):
  """(prediction lines, label lines) -> {'slices', 'alerts', 'drift' (with
  a baseline file), 'dead_letters'}, per window of config.drift_window."""

  def __init__(self, config, lateness_s):
    super().__init__()
    if config.baseline_window is not None:
      raise ValueError('a stream needs a baseline file, not a window')
    self._config = config
    self._lateness = lateness_s

  def _windows(self, lateness_s):
    size, period = parse_window_spec(self._config.drift_window)
    windows = (window.FixedWindows(size) if period == size
               else window.SlidingWindows(size, period))
    return windows, dict(
        trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
        allowed_lateness=lateness_s)

  def expand(self, inputs):
    c = self._config
    prediction_lines, label_lines = inputs
    predictions = prediction_lines | 'ParsePredictions' >> beam.ParDo(
        ParsePredictions(c)).with_outputs(DEAD_LETTER, PROFILE, main='parsed')
    labels = label_lines | 'ParseLabels' >> beam.ParDo(
        ParseLabels(c)).with_outputs(DEAD_LETTER, main='parsed')
    joined = (
        (predictions.parsed | 'AtPredictionTime' >> beam.Map(
            _at_prediction_time),
         labels.parsed | 'AtLabelTime' >> beam.Map(_at_label_time))
        | 'JoinLabels' >> JoinLabelsInEventTime(c, self._lateness))
    fixed, options = self._windows(2 * self._lateness)
    per_window = dataclasses.replace(c, time_slices=('all',), windows=())
    slices = (
        joined.scored
        | 'MetricWindows' >> beam.WindowInto(fixed, **options)
        | 'MetricsPerVersion' >> beam.CombinePerKey(SliceMetricsFn(per_window))
        | 'WindowRecords' >> beam.ParDo(_WindowRecords(per_window)))
    alerts = slices | 'Alerts' >> Alerts(c.alert_rules, c.alert_min_labelled)
    out = {'slices': slices, 'alerts': alerts}
    if c.drift:
      fixed, options = self._windows(self._lateness)
      drift = (predictions[PROFILE]
               | 'AtWindowStart' >> beam.Map(  # binned: a baseline file
                   lambda e: window.TimestampedValue(e, e[0][3]))
               | 'DriftWindows' >> beam.WindowInto(fixed, **options)
               | 'InItsOwnWindow' >> beam.ParDo(_InItsOwnWindow())
               | 'Drift' >> Drift(c))
      out['drift'] = drift['drift']
      out['alerts'] = ((alerts, drift['alerts'])
                       | 'MetricAndDriftAlerts' >> beam.Flatten())
    out['dead_letters'] = (
        (predictions[DEAD_LETTER], labels[DEAD_LETTER], joined[DEAD_LETTER])
        | 'DeadLetters' >> beam.Flatten())
    return out
