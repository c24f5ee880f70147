"""The Evaluate transform end to end on TestPipeline, checked against
scikit-learn on the same joined rows, slice by slice."""
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
import numpy as np
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from tests import evaluation_data as data
from transforms.evaluation.evaluate import Evaluate
from transforms.evaluation.alerts import parse_rule
from transforms.evaluation.config import EvaluationConfig

POS, NEG = data.POS, data.NEG


def _config(**overrides):
  settings = dict(
      as_of=data.AS_OF, prediction_field='positive_review_probability',
      time_slices=('day', 'week', 'month', 'all'), windows=('3d', '1h'),
      key_segments=('age', 'sex', 'id'), segment_by=('age', 'sex'))
  settings.update(overrides)
  return EvaluationConfig(**settings)


def _evaluate(predictions, labels, config, check):
  """Runs Evaluate; `check` gets {output name: [records]} of all outputs,
  so one check can relate outputs to each other (reconciliation)."""

  def matcher(tagged):
    out = {name: [] for name in ('slices', 'comparisons', 'alerts',
                                 'dead_letters')}
    for name, record in tagged:
      out[name].append(record)
    check(out)

  with TestPipeline(runner='FnApiRunner') as p:
    outputs = (
        p | 'P' >> beam.Create(predictions),
        p | 'L' >> beam.Create(labels)) | Evaluate(config)
    tagged = [pcoll | f'Tag{name}' >> beam.Map(lambda r, n=name: (n, r))
              for name, pcoll in outputs.items()]
    assert_that(tagged | beam.Flatten(), matcher)


def _members(rows, record):
  labelled = [r for r in rows if data.in_slice(record, r) and r[4] is not None]
  return labelled, [r for r in rows if data.in_slice(record, r)]


def _check_binary_slice(record, rows):
  labelled, members = _members(rows, record)
  assert record['count'] == len(members), record['slice']
  assert record['labelled'] == len(labelled), record['slice']
  if not labelled:
    assert record['accuracy'] is None and record['macro_f1'] is None
    return
  y_true = [r[4] for r in labelled]
  scores = [r[5]['positive_review_probability'] for r in labelled]
  y_pred = [POS if s >= 0.5 else NEG for s in scores]
  labels = sorted(set(y_true) | set(y_pred))
  assert record['confusion_matrix'] == {
      'labels': labels,
      'matrix': sk.confusion_matrix(y_true, y_pred, labels=labels).tolist()}
  p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred,
                                                  labels=labels,
                                                  zero_division=0)
  assert [c['precision'] for c in record['per_class']] == pytest.approx(p)
  assert [c['recall'] for c in record['per_class']] == pytest.approx(r)
  assert [c['f1'] for c in record['per_class']] == pytest.approx(f)
  assert [c['support'] for c in record['per_class']] == s.tolist()
  assert record['accuracy'] == pytest.approx(sk.accuracy_score(y_true, y_pred))
  assert record['macro_f1'] == pytest.approx(
      sk.f1_score(y_true, y_pred, average='macro', zero_division=0))
  assert record['weighted_f1'] == pytest.approx(
      sk.f1_score(y_true, y_pred, average='weighted', zero_division=0))
  is_pos = [t == POS for t in y_true]
  if len(set(is_pos)) == 2:
    assert record['roc_auc'] == pytest.approx(
        sk.roc_auc_score(is_pos, scores), abs=1e-12), record['slice']
  else:
    assert record['roc_auc'] is None
  assert record['log_loss'] == pytest.approx(
      sk.log_loss(is_pos, scores, labels=[False, True]), rel=1e-9)
  _check_calibration(record, is_pos, scores)


def _check_calibration(record, is_pos, scores):
  """Brier score and the reliability bins equal scikit-learn's; the ECE is
  their count-weighted gap."""
  assert record['brier_score'] == pytest.approx(
      sk.brier_score_loss(is_pos, scores), rel=1e-9)
  bins = [b for b in record['calibration'] if b['count']]
  if len(set(is_pos)) == 2:
    prob_true, prob_pred = calibration_curve(is_pos, scores, n_bins=10)
    assert [b['fraction_positive'] for b in bins] == pytest.approx(prob_true)
    assert [b['mean_predicted'] for b in bins] == pytest.approx(prob_pred)
  counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], scores),
                       minlength=10)
  assert [b['count'] for b in record['calibration']] == counts.tolist()
  assert record['ece'] == pytest.approx(sum(
      b['count'] / len(scores) * abs(b['fraction_positive']
                                     - b['mean_predicted']) for b in bins))


def test_binary_slices_equal_scikit_learn_and_inputs_reconcile():
  predictions, labels = data.binary_world()
  rows = data.joined(predictions, labels)

  def check(out):
    slices = out['slices']
    names = {(s['model_version'], s['slice']) for s in slices}
    # Several kinds of slices, each compared with scikit-learn.
    for expected in [('1', 'all'), ('2', 'all'), ('1', 'day=2026-01-03'),
                     ('1', 'week=2026-W02'), ('1', 'month=2026-01'),
                     ('2', 'window=3d'), ('1', 'all age=35'),
                     ('1', 'day=2026-01-07 sex=F'), ('2', 'window=3d sex=M')]:
      assert expected in names
    for record in slices:
      _check_binary_slice(record, rows)
    assert len(slices) == len(names)  # one record per slice
    # 5 labels for unknown keys, nothing else rejected.
    reasons = [d['reason'] for d in out['dead_letters']]
    assert reasons == ['unmatched_label'] * 5
    assert {d['raw']['key'] for d in out['dead_letters']} == {
        f'99-F-{90000 + j}' for j in range(5)}

  _evaluate(data.lines(predictions), data.lines(labels), _config(), check)


def test_late_and_repeated_labels_latest_wins_whatever_the_order():
  prediction = data.log_row('m', '1', 'k1', {}, {'p': 0.9},
                            '2026-01-05T00:00:00+00:00')
  labels = [
      {'key': 'k1', 'groundtruth': NEG, 'labeled_at': '2026-01-06T00:00:00Z'},
      {'key': 'k1', 'groundtruth': POS, 'labeled_at': '2026-01-08T00:00:00Z'},
      {'key': 'k1', 'groundtruth': NEG, 'labeled_at': '2026-01-07T00:00:00Z'},
  ]

  def check(out):
    overall = [s for s in out['slices'] if s['slice'] == 'all'][0]
    assert overall['labelled'] == 1
    assert overall['confusion_matrix'] == {'labels': [POS], 'matrix': [[1]]}
    assert out['dead_letters'] == []

  config = _config(prediction_field=None, windows=(), key_segments=(),
                   segment_by=())
  _evaluate([json.dumps(prediction)], data.lines(labels), config, check)
  _evaluate([json.dumps(prediction)], data.lines(labels[::-1]), config, check)


def test_empty_windows_and_unlabelled_slices_are_reported():
  prediction = data.log_row('m', '1', 'k1', {}, 0.9,
                            '2026-01-01T00:00:00+00:00')

  def check(out):
    by_slice = {s['slice']: s for s in out['slices']}
    # Nothing in the last hour before as_of: reported, with count 0.
    assert by_slice['window=1h']['count'] == 0
    assert by_slice['window=1h']['accuracy'] is None
    assert by_slice['window=1h']['window_end'] == data.AS_OF.isoformat()
    # Predicted but never labelled.
    assert by_slice['all']['count'] == 1
    assert by_slice['all']['labelled'] == 0
    assert by_slice['all']['label_coverage'] == 0.0
    assert by_slice['all']['macro_f1'] is None

  _evaluate([json.dumps(prediction)], [], _config(
      prediction_field=None, key_segments=(), segment_by=()), check)


def test_version_comparison_uses_only_keys_both_versions_scored():
  predictions, labels = data.binary_world()
  rows = data.joined(predictions, labels)

  def check(out):
    [comparison] = out['comparisons']
    assert (comparison['version_a'], comparison['version_b']) == ('1', '2')
    both = {r[2] for r in rows if r[1] == '2' and r[4] is not None}
    assert comparison['keys'] == len(both)
    for version, side in (('1', 'metrics_a'), ('2', 'metrics_b')):
      chosen = [r for r in rows if r[1] == version and r[2] in both]
      y_true = [r[4] for r in chosen]
      y_pred = [POS if r[5]['positive_review_probability'] >= 0.5 else NEG
                for r in chosen]
      assert comparison[side]['macro_f1'] == pytest.approx(
          sk.f1_score(y_true, y_pred, average='macro'))
    assert comparison['delta']['macro_f1'] == pytest.approx(
        comparison['metrics_b']['macro_f1']
        - comparison['metrics_a']['macro_f1'])
    # The better model (version 2) shows as an improvement.
    assert comparison['delta']['accuracy'] > 0

  _evaluate(data.lines(predictions), data.lines(labels), _config(), check)


def test_multiclass_in_the_books_shapes():
  predictions, labels = data.multiclass_world()
  rows = data.joined(predictions, labels,
                     lambda g: g['predictions'][0]['source'])

  def check(out):
    by_slice = {s['slice']: s for s in out['slices']}
    for name in ('all', 'day=2026-01-04', 'week=2026-W02'):
      record = by_slice[name]
      chosen = [r for r in rows if data.in_slice(record, r)]
      y_true = [r[4] for r in chosen]
      y_pred = [r[5]['source'] for r in chosen]
      labels_ = sorted(set(y_true) | set(y_pred))
      assert record['confusion_matrix']['matrix'] == sk.confusion_matrix(
          y_true, y_pred, labels=labels_).tolist()
      p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred,
                                                      zero_division=0)
      assert [c['f1'] for c in record['per_class']] == pytest.approx(f)
      assert [c['precision'] for c in record['per_class']] == pytest.approx(p)
      assert record['macro_f1'] == pytest.approx(
          sk.f1_score(y_true, y_pred, average='macro', zero_division=0))
      assert record['roc_auc'] is None and record['log_loss'] is None

  _evaluate(data.lines(predictions), data.lines(labels),
            _config(prediction_field='source', key_segments=(),
                    segment_by=(),
                    label_set=('github', 'nytimes', 'techcrunch')), check)


def test_alerts_one_fires_one_does_not_and_drops_name_the_previous_period():
  # Day 1: all right; day 2: half wrong.
  def row(key, day, score):
    return data.log_row('m', '7', key, {}, score, f'2026-01-0{day}T10:00:00Z')
  predictions = [row('a', 1, 0.9), row('b', 1, 0.1), row('c', 2, 0.9),
                 row('d', 2, 0.9)]
  labels = [{'key': k, 'groundtruth': POS if k in 'ac' else NEG,
             'labeled_at': '2026-01-03T00:00:00Z'} for k in 'abcd']
  rules = tuple(parse_rule(r) for r in (
      'accuracy<0.6', 'macro_f1<0.1', 'accuracy drop>0.25'))
  config = _config(prediction_field=None, time_slices=('day', 'all'),
                   windows=(), key_segments=(), segment_by=(),
                   alert_rules=rules)

  def check(out):
    fired = sorted((a['rule'], a['slice'], a['value']) for a in out['alerts'])
    assert fired == [('accuracy drop>0.25', 'day=2026-01-02', 0.5),
                     ('accuracy<0.6', 'day=2026-01-02', 0.5)]
    drop = [a for a in out['alerts'] if a['kind'] == 'drop'][0]
    assert drop['previous_period'] == '2026-01-01'
    assert drop['previous_value'] == 1.0 and drop['drop'] == 0.5
    assert drop['model'] == 'm' and drop['model_version'] == '7'
    assert drop['metric'] == 'accuracy' and drop['threshold'] == 0.25

  _evaluate(data.lines(predictions), data.lines(labels), config, check)


def test_bad_rows_are_dead_letters_with_reasons_and_counts_reconcile():
  good = data.log_row('m', '1', 'k1', {}, 0.9, '2026-01-01T00:00:00Z')
  bad_predictions = [
      'not json',
      json.dumps([1, 2]),
      json.dumps({**good, 'key': None}),
      json.dumps({**good, 'model_version': None}),
      json.dumps({**good, 'time': 'yesterday'}),
      json.dumps({**good, 'raw_prediction': {'predictions': [1.5]}}),
      json.dumps({**good, 'raw_prediction': {'predictions': [{'a': 1,
                                                              'b': 2}]}}),
  ]
  bad_labels = [
      '{"key": "k1", "groundtruth": ',
      json.dumps({'groundtruth': POS}),
      json.dumps({'key': 'k1', 'labeled_at': '2026-01-02T00:00:00Z'}),
      json.dumps({'key': 'k1', 'groundtruth': POS, 'labeled_at': 'soon'}),
      json.dumps({'key': 'k1', 'groundtruth': [1, 2]}),
  ]
  good_label = {'key': 'k1', 'groundtruth': POS,
                'labeled_at': '2026-01-02T00:00:00Z'}
  prediction_lines = [json.dumps(good)] + bad_predictions + ['']
  label_lines = [json.dumps(good_label)] + bad_labels

  def check(out):
    got = sorted((d['stage'], d['reason']) for d in out['dead_letters'])
    assert got == sorted([
        ('parse_prediction', 'unparseable_row'),
        ('parse_prediction', 'unparseable_row'),
        ('parse_prediction', 'missing_key'),
        ('parse_prediction', 'missing_field'),
        ('parse_prediction', 'bad_time'),
        ('parse_prediction', 'bad_prediction'),
        ('parse_prediction', 'bad_prediction'),
        ('parse_label', 'unparseable_row'),
        ('parse_label', 'missing_key'),
        ('parse_label', 'missing_field'),
        ('parse_label', 'bad_time'),
        ('parse_label', 'bad_label'),
    ])
    # Every dead letter carries its complete original row.
    raws = [d['raw'] for d in out['dead_letters']]
    assert 'not json' in raws
    assert json.loads(bad_predictions[5]) in raws
    # Inputs = outputs + dead letters: 8 non-blank prediction rows = 1
    # evaluated + 7 rejected; 6 label rows = 1 matched + 5 rejected.
    overall = [s for s in out['slices'] if s['slice'] == 'all'][0]
    assert overall['count'] + sum(
        d['stage'] == 'parse_prediction' for d in out['dead_letters']) == 8
    assert overall['labelled'] + sum(
        d['stage'] == 'parse_label' for d in out['dead_letters']) == 6

  _evaluate(prediction_lines, label_lines, _config(
      prediction_field=None, windows=(), key_segments=(), segment_by=()),
      check)


def test_keys_without_the_segment_layout_still_count_unsegmented():
  def row(key):
    return data.log_row('m', '1', key, {}, 0.9, '2026-01-01T00:00:00Z')
  predictions = [row('35-F-1'), row('legacy_key')]
  labels = [{'key': k, 'groundtruth': POS} for k in ('35-F-1', 'legacy_key')]
  rules = (parse_rule('labelled<5'),)

  def check(out):
    by_slice = {s['slice']: s for s in out['slices']}
    assert by_slice['all']['labelled'] == 2
    assert by_slice['all age=35']['labelled'] == 1
    assert 'all age=legacy_key' not in by_slice
    # A label-free rule is evaluated even below --alert_min_labelled.
    assert {a['slice'] for a in out['alerts']} == {
        'all', 'all age=35', 'all sex=F'}

  _evaluate(data.lines(predictions), data.lines(labels), _config(
      prediction_field=None, time_slices=('all',), windows=(),
      alert_rules=rules, alert_min_labelled=10), check)


def test_gates_against_a_named_and_the_previous_version_record_each_decision():
  # Version 1 is right on 4 keys of 4, version 2 on 3, version 3 on 2.
  truth = {'a': POS, 'b': NEG, 'c': POS, 'd': NEG}
  wrong = {'1': set(), '2': {'a'}, '3': {'a', 'b'}}
  predictions = [
      data.log_row('m', v, k, {}, (0.1 if truth[k] == POS else 0.9)
                   if k in wrong[v] else (0.9 if truth[k] == POS else 0.1),
                   '2026-01-05T00:00:00Z')
      for v in wrong for k in truth]
  labels = [{'key': k, 'groundtruth': t, 'labeled_at': '2026-01-06T00:00:00Z'}
            for k, t in truth.items()]
  rules = tuple(parse_rule(r) for r in (
      'accuracy drop>0.1 vs 1', 'accuracy drop>0.3 vs previous',
      'accuracy drop>0.1 vs 9'))
  config = _config(prediction_field=None, time_slices=('all',), windows=(),
                   key_segments=(), segment_by=(), alert_rules=rules)

  def check(out):
    gates = sorted((a['rule'], a['model_version'], a['decision'],
                    a['baseline_version'], a['value'], a['baseline_value'],
                    a['drop']) for a in out['alerts'])
    assert gates == [
        ('accuracy drop>0.1 vs 1', '2', 'fail', '1', 0.75, 1.0, 0.25),
        ('accuracy drop>0.1 vs 1', '3', 'fail', '1', 0.5, 1.0, 0.5),
        ('accuracy drop>0.3 vs previous', '2', 'pass', '1', 0.75, 1.0, 0.25),
        ('accuracy drop>0.3 vs previous', '3', 'pass', '2', 0.5, 0.75, 0.25),
    ]
    assert {a['kind'] for a in out['alerts']} == {'gate'}

  _evaluate(data.lines(predictions), data.lines(labels), config, check)


@pytest.mark.parametrize('text', ['accuracy<0.5 vs 1', 'psi>0.1 vs 1',
                                  'x:accuracy drop>0.1'])
def test_gate_and_drift_parts_only_where_they_belong(text):
  with pytest.raises(ValueError, match=repr(text)):
    parse_rule(text)


def test_labels_outside_the_label_set_are_dead_letters_and_counts_reconcile():
  binary = [data.log_row('m', '1', k, {}, 0.8, '2026-01-01T00:00:00Z')
            for k in ('a', 'b')]
  classes = [data.log_row('s', '1', k, {}, {'source': 'github'},
                          '2026-01-01T00:00:00Z') for k in ('c', 'd')]
  labels = [
      {'key': 'a', 'groundtruth': POS, 'labeled_at': '2026-01-02T00:00:00Z'},
      # A binary model cannot predict 'neutral': rejected in the join.
      {'key': 'b', 'groundtruth': 'neutral',
       'labeled_at': '2026-01-02T00:00:00Z'},
      {'key': 'c', 'groundtruth': 'github'},
      # Not in --label_set: rejected as it is read.
      {'key': 'd', 'groundtruth': 'reddit'},
  ]
  config = _config(prediction_field=None, windows=(), key_segments=(),
                   segment_by=(), time_slices=('all',),
                   label_set=(POS, NEG, 'neutral', 'github', 'nytimes'))

  def check(out):
    dead = sorted((d['stage'], d['reason'], d['key'])
                  for d in out['dead_letters'])
    assert dead == [('join', 'unknown_label', 'b'),
                    ('parse_label', 'unknown_label', 'd')]
    assert 'neutral' in [d for d in out['dead_letters']
                         if d['key'] == 'b'][0]['error']
    overall = {s['model']: s for s in out['slices']}
    # Every prediction is counted, the rejected labels' ones unlabelled.
    assert (overall['m']['count'], overall['m']['labelled']) == (2, 1)
    assert (overall['s']['count'], overall['s']['labelled']) == (2, 1)
    assert overall['m']['labelled'] + overall['s']['labelled'] + len(
        dead) == len(labels)

  _evaluate(data.lines(binary + classes), data.lines(labels), config, check)


def test_shadow_rows_are_evaluated_apart_and_an_unknown_role_is_refused():
  def row(key, score, role=None):
    r = data.log_row('m', '4', key, {}, score, '2026-01-01T00:00:00Z')
    if role:
      r['role'] = role
    return r
  predictions = [row('a', 0.9), row('b', 0.8, 'live'),
                 row('a', 0.1, 'shadow'), row('b', 0.2, 'shadow'),
                 row('c', 0.9, 'canary')]
  labels = [{'key': k, 'groundtruth': POS,
             'labeled_at': '2026-01-02T00:00:00Z'} for k in 'ab']
  config = _config(prediction_field=None, time_slices=('all',), windows=(),
                   key_segments=(), segment_by=())

  def check(out):
    overall = {s['model_version']: s for s in out['slices']}
    assert set(overall) == {'4', '4 (shadow)'}
    assert (overall['4']['count'], overall['4']['accuracy']) == (2, 1.0)
    assert (overall['4 (shadow)']['count'],
            overall['4 (shadow)']['accuracy']) == (2, 0.0)
    assert [(d['key'], d['reason']) for d in out['dead_letters']] == [
        ('c', 'bad_role')]

  _evaluate(data.lines(predictions), data.lines(labels), config, check)
