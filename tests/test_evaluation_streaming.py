"""The streaming evaluation (TestStream, DirectRunner): the last pane of
each window equals the batch job's day slice on the same rows, drift
records are the batch ones, and bounded state: predictions without a label
by the lateness are counted unlabelled, late labels are dead letters (told
late while their key's tombstone lasts); a label in time that comes after
its window fired refines it in a late pane."""
import datetime
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.transforms import window

from tests import evaluation_data as data
from tests import test_evaluation_drift as drift_data
from transforms.evaluation.alerts import parse_drift_rule
from transforms.evaluation.alerts import parse_rule
from transforms.evaluation.config import EvaluationConfig
from transforms.evaluation.evaluate import Evaluate
from transforms.evaluation.streaming import EvaluateStream

DAY = 86400
COMPARED = ('count', 'labelled', 'accuracy', 'macro_f1', 'roc_auc',
            'log_loss', 'brier_score', 'ece')


def _epoch(text):
  return datetime.datetime.fromisoformat(text.replace('Z', '+00:00')
                                         ).timestamp()


def _config(**overrides):
  settings = dict(
      as_of=data.AS_OF, prediction_field='positive_review_probability',
      time_slices=('day',), windows=(), key_segments=('age', 'sex', 'id'),
      segment_by=('sex',), drift_window='1d',
      alert_rules=(parse_rule('accuracy<0.7'),))
  settings.update(overrides)
  return EvaluationConfig(**settings)


STEP = 6 * 3600


def _stream(predictions, labels, end):
  """One TestStream of ('p' | 'l', line), each at its event time (labels
  at labeled_at), in event-time order, the watermark following in steps
  of STEP up to `end`, as a source's does. (The DirectRunner does not hold
  a stateful DoFn's output watermark at its pending timers, as Dataflow
  does: one jump of the watermark past a window and the lateness would make
  the rows a flush emits late for their windows.)"""
  events = [(_epoch(r['time']), 'p', r) for r in predictions]
  events += [(_epoch(r['labeled_at']), 'l', r) for r in labels]
  events.sort(key=lambda e: (e[0], e[1]))
  stream = TestStream()
  watermark = events[0][0] // STEP * STEP
  pending = []
  for t, kind, row in events + [(end, None, None)]:
    while t >= watermark + STEP:
      if pending:
        stream.add_elements(pending)
        pending = []
      watermark += STEP
      stream.advance_watermark_to(watermark)
    if kind:
      pending.append(window.TimestampedValue((kind, json.dumps(row)), t))
  stream.advance_watermark_to_infinity()
  return stream


def _run_streaming(predictions, labels, config, lateness, end, check):
  options = PipelineOptions(runner='DirectRunner')
  options.view_as(StandardOptions).streaming = True
  p = TestPipeline(options=options)
  tagged = p | _stream(predictions, labels, end)
  lines = tuple(tagged | f'Only{kind}' >> beam.FlatMap(
      lambda e, k=kind: [e[1]] if e[0] == k else []) for kind in 'pl')
  out = lines | EvaluateStream(config, lateness)
  _collect(out, check)
  p.run().wait_until_finish()


def _run_batch(predictions, labels, config, check):
  with TestPipeline(runner='FnApiRunner') as p:
    out = (p | 'P' >> beam.Create(data.lines(predictions)),
           p | 'L' >> beam.Create(data.lines(labels))) | Evaluate(config)
    _collect(out, check)


def _collect(out, check):
  names = sorted(out)

  def matcher(tagged):
    got = {name: [] for name in names}
    for name, record in tagged:
      got[name].append(record)
    check(got)

  tagged = [out[name] | f'Tag{name}' >> beam.WindowInto(
      window.GlobalWindows()) | f'As{name}' >> beam.Map(
          lambda r, n=name: (n, r)) for name in names]
  assert_that(tagged | 'All' >> beam.Flatten(), matcher)


def _final(records):
  """Each window's last (largest) accumulating pane."""
  final = {}
  for r in records:
    key = (r['model'], r['model_version'], r['slice'])
    if key not in final or (r['count'], r['labelled']) > (
        final[key]['count'], final[key]['labelled']):
      final[key] = r
  return final


def test_last_panes_equal_the_batch_day_slices_and_alerts_agree(tmp_path):
  predictions, labels = data.binary_world(n_keys=240)
  config = _config()
  batch_file = tmp_path / 'batch.json'

  def keep_batch(got):
    batch_file.write_text(json.dumps(got))

  _run_batch(predictions, labels, config, keep_batch)
  batch = json.loads(batch_file.read_text())
  by_day = {(s['model'], s['model_version'],
             s['slice'].replace('day=', '')): s for s in batch['slices']}

  def check(got):
    final = _final(got['slices'])
    assert len(final) == len(by_day)
    for (model, version, name), record in final.items():
      start, _, segment = name[len('window='):].partition(' ')
      day = f'{start[:10]} {segment}'.strip()
      expected = by_day[(model, version, day)]
      assert record['confusion_matrix'] == expected['confusion_matrix']
      for metric in COMPARED:
        assert record[metric] == pytest.approx(expected[metric]), (
            name, metric)
      assert record['window_end'][:10] == (
          datetime.date.fromisoformat(start[:10])
          + datetime.timedelta(days=1)).isoformat()
    assert {p['pane'] for p in got['slices']} <= {'on_time', 'late'}
    # The same alerts fire (on the final panes) as on the batch days.
    fired = {(a['model_version'], a['slice'].split('=')[1][:10],
              a['value']) for a in got['alerts']
             if a['slice'] in {r['slice'] for r in final.values()}
             and a['value'] == final[(a['model'], a['model_version'],
                                      a['slice'])]['accuracy']}
    assert fired and fired == {
        (a['model_version'], a['slice'][4:14], a['value'])
        for a in batch['alerts']}
    # The unmatched labels (keys nobody scored) are dead letters.
    assert sorted(d['reason'] for d in got['dead_letters']) == sorted(
        d['reason'] for d in batch['dead_letters'])

  # Labels come 2 to 3 days after their predictions: a 4-day lateness.
  _run_streaming(predictions, labels, config, 4 * DAY,
                 _epoch('2026-01-20T00:00:00Z'), check)


@pytest.mark.parametrize('spec,windows', [('1d', 3), ('2d/1d', 4)])
def test_drift_per_window_equals_the_batch_drift(tmp_path, spec, windows):
  rows = drift_data._log(8, 600, shift=True)
  baseline = drift_data._baseline(drift_data._log(7, 600))
  config = _config(key_segments=(), segment_by=(), alert_rules=(),
                   baseline=baseline, drift_window=spec,
                   drift_rules=(parse_drift_rule('psi>0.2'),))
  batch_file = tmp_path / 'batch.json'
  _run_batch(rows, [], config,
             lambda got: batch_file.write_text(json.dumps(got['drift'])))
  batch = {(d['window_start'], d['feature'], d['metric']): d
           for d in json.loads(batch_file.read_text())}

  def check(got):
    final = {}
    for d in got['drift']:
      final[(d['window_start'], d['feature'], d['metric'])] = d
    assert final.keys() == batch.keys()
    assert len(final) == windows * 3 * 3
    for key, d in final.items():
      assert d == dict(batch[key], value=pytest.approx(batch[key]['value']))
    assert any(d['alert'] for d in final.values())

  _run_streaming(rows, [], config, DAY, _epoch('2026-01-10T00:00:00Z'), check)


def _row(key, when, score):
  return data.log_row('m', '1', key, {}, score, when)


def _label(key, label, when):
  return {'key': key, 'groundtruth': label, 'labeled_at': when}


def test_a_label_later_than_the_lateness_leaves_its_prediction_unlabelled():
  predictions = [_row('a', '2026-01-01T10:00:00Z', 0.9),
                 _row('b', '2026-01-01T11:00:00Z', 0.2),
                 _row('c', '2026-01-01T11:00:00Z', 0.2)]
  labels = [
      _label('a', 'positive', '2026-01-01T12:00:00Z'),  # within the 6 hours
      # c was joined at 17:00 (its prediction + the lateness): its label
      # meets the tombstone (kept until 23:00) and is told late.
      _label('c', 'negative', '2026-01-01T19:00:00Z'),
      # b's comes after the tombstone too: as a label nobody predicted.
      _label('b', 'negative', '2026-01-02T12:00:00Z'),
  ]
  config = _config(prediction_field=None, key_segments=(), segment_by=(),
                   alert_rules=())

  def check(got):
    final = _final(got['slices'])
    record = final[('m', '1', 'window=2026-01-01T00:00:00+00:00')]
    # Every prediction counted, only the label in time joined.
    assert (record['count'], record['labelled']) == (3, 1)
    dead = sorted((d['key'], d['reason'], d['error']) for d in
                  got['dead_letters'])
    assert [(key, reason) for key, reason, _ in dead] == [
        ('b', 'unmatched_label'), ('c', 'late_label')]
    assert '2026-01-01T17:00:00+00:00' in dead[1][2]

  _run_streaming(predictions, labels, config, 6 * 3600,
                 _epoch('2026-01-05T00:00:00Z'), check)


def test_a_label_after_the_first_pane_refines_the_window():
  predictions = [_row('a', '2026-01-01T10:00:00Z', 0.9),
                 _row('b', '2026-01-01T20:00:00Z', 0.2)]
  labels = [
      _label('a', 'positive', '2026-01-01T11:00:00Z'),
      # After a was joined (02T10:00) and its row fired the window's first
      # pane; within b's lateness (joined at 02T20:00).
      _label('b', 'positive', '2026-01-02T15:00:00Z'),
  ]
  config = _config(prediction_field=None, key_segments=(), segment_by=(),
                   alert_rules=())

  def check(got):
    panes = sorted(
        (r['count'], r['labelled'], r['accuracy'], r['pane'])
        for r in got['slices']
        if r['slice'] == 'window=2026-01-01T00:00:00+00:00')
    # The first pane holds a alone; the refinement adds b with its label
    # (predicted negative, labelled positive: accuracy 1/2).
    assert [p[:3] for p in panes] == [(1, 1, 1.0), (2, 2, 0.5)]
    assert panes[1][3] == 'late'
    assert got['dead_letters'] == []

  _run_streaming(predictions, labels, config, 86400,
                 _epoch('2026-01-06T00:00:00Z'), check)
