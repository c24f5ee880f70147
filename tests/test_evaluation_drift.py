"""Drift against a baseline: the shared statistics and bins equal numpy's,
the measures equal scipy's on the same bins, and the Evaluate transform
raises the drift alert on a shifted log and not on the unshifted one."""
import datetime
import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from scipy import stats
from scipy.spatial import distance

from common import drift_measures
from common import feature_stats
from common.records.evaluation import DRIFT_SHAPE
from common.records.prediction_log import log_row
from tests import evaluation_data as data
from transforms.evaluation.alerts import parse_drift_rule
from transforms.evaluation.config import EvaluationConfig
from transforms.evaluation.evaluate import Evaluate

WORDS = ('good bad film plot actor great boring scene music end story '
         'love hate fun slow long').split()
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _review(rng, words):
  return ' '.join(rng.choice(WORDS) for _ in range(words)) + '!'


def _log(seed, n, shift=False, days=3, genre=None):
  """Prediction-log rows over `days` days; `shift`: twice the words, and
  scores pushed up, from the last day on."""
  rng = random.Random(seed)
  rows = []
  for i in range(n):
    day = i % days
    shifted = shift and day == days - 1
    words = rng.randint(5, 40) * (2 if shifted else 1)
    score = min(1.0, max(0.0, rng.gauss(0.75 if shifted else 0.5, 0.2)))
    instance = {'reviews': _review(rng, words)}
    if genre:
      instance['genre'] = rng.choice(genre)
    rows.append(log_row(
        'sentiment', '1', f'k{seed}-{i}', instance,
        {'positive_review_probability': score},
        START + datetime.timedelta(days=day, seconds=i)))
  return rows


def _baseline(rows, vocabulary=None):
  profiles = [feature_stats.profile(
      data.json.loads(r['raw_data'])['instances'][0],
      data.json.loads(r['raw_prediction'])['predictions'][0],
      vocabulary) for r in rows]
  return feature_stats.build_baseline(
      profiles, {'positive_review_probability'},
      None if vocabulary is None else 'model', 'test', vocabulary)


def test_profile_text_tokens_and_oov_follow_the_vectorizer_rules():
  p = feature_stats.profile({'reviews': 'A Great, great FILM -- zzz!'},
                            {'p': [0.25]},
                            feature_stats.as_vocabulary(['a', 'great', 'film']))
  assert p['reviews_chars'] == 27 and p['reviews_tokens'] == 5
  assert p['reviews_oov_rate'] == pytest.approx(1 / 5)
  assert p['p'] == 0.25
  # Non-ASCII letters are kept as they are, like TextVectorization does.
  assert feature_stats.tokens('Émile  DID\u00a0it.') == [
      'Émile'.encode(), b'did\xc2\xa0it']


def test_quantile_edges_and_bins_equal_numpy():
  rng = np.random.default_rng(1)
  values = rng.gamma(2.0, 30.0, 5000).round().tolist()
  edges = feature_stats.quantile_edges(values)
  expected = np.unique(np.quantile(values, np.arange(1, 10) / 10))
  assert edges == pytest.approx(expected.tolist())
  spec = {'kind': feature_stats.NUMERIC, 'edges': edges}
  bins = [feature_stats.bin_of(spec, v) for v in values]
  assert bins == np.digitize(values, edges).tolist()


def test_baseline_counts_bins_of_every_statistic_and_finds_categories():
  rows = _log(1, 400, genre=['drama', 'comedy', 'horror'])
  baseline = feature_stats.check_baseline(_baseline(rows))
  statistics = baseline['statistics']
  assert set(statistics) == {'reviews_chars', 'reviews_tokens', 'genre',
                             'positive_review_probability'}
  probability = statistics['positive_review_probability']
  assert probability['kind'] == feature_stats.PROBABILITY
  scores = [data.json.loads(r['raw_prediction'])['predictions'][0][
      'positive_review_probability'] for r in rows]
  assert probability['counts'] == np.histogram(
      scores, bins=[0.0, *feature_stats.PROBABILITY_EDGES, 1.0])[0].tolist()
  genre = statistics['genre']
  assert genre['kind'] == feature_stats.CATEGORICAL
  assert sorted(genre['categories']) == ['comedy', 'drama', 'horror']
  assert sum(genre['counts']) == 400 and genre['counts'][-1] == 0


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_measures_equal_scipy_and_numpy_on_the_same_bins(seed):
  rng = np.random.default_rng(seed)
  a = rng.integers(0, 10, 3000)
  b = np.minimum(rng.integers(0, 10, 2000) + rng.integers(0, 3, 2000), 9)
  ca, cb = np.bincount(a, minlength=10), np.bincount(b, minlength=10)
  assert drift_measures.js_distance(ca.tolist(), cb.tolist()) == (
      pytest.approx(distance.jensenshannon(ca, cb, base=2)))
  # KS of the binned samples = ks_2samp's statistic on the bin indices.
  assert drift_measures.ks_statistic(ca.tolist(), cb.tolist()) == (
      pytest.approx(stats.ks_2samp(a, b).statistic))
  pa = np.maximum(ca / ca.sum(), drift_measures.PSI_FLOOR)
  pb = np.maximum(cb / cb.sum(), drift_measures.PSI_FLOOR)
  assert drift_measures.psi(ca.tolist(), cb.tolist()) == pytest.approx(
      float(np.sum((pb - pa) * np.log(pb / pa))))


def test_identical_histograms_have_no_drift_and_an_empty_bin_stays_finite():
  assert drift_measures.psi([5, 5, 0], [5, 5, 0]) == 0
  assert drift_measures.js_distance([1, 2], [1, 2]) == 0
  assert 0 < drift_measures.psi([10, 0], [5, 5]) < 10


def test_drift_rules_parse_and_a_statistic_rule_wins_over_a_general_one():
  from transforms.evaluation.drift import rule_for
  general, own = parse_drift_rule('psi>0.2'), parse_drift_rule(
      'reviews_chars:psi>0.5')
  assert (own.feature, own.metric, own.threshold) == ('reviews_chars',
                                                      'psi', 0.5)
  assert rule_for((general, own), 'reviews_chars', 'psi') is own
  assert rule_for((general, own), 'reviews_tokens', 'psi') is general
  assert rule_for((general, own), 'reviews_tokens', 'js') is None
  for bad in ('auc>0.2', 'psi drop>0.1', 'x:psi[a]>1'):
    with pytest.raises(ValueError, match='drift'):
      parse_drift_rule(bad)


def _run(rows, config, check):
  """Runs Evaluate without labels; `check` gets {output: [records]} of the
  drift, alerts and dead letters (inside the matcher, where they exist)."""
  names = ('drift', 'alerts', 'dead_letters')

  def matcher(tagged):
    out = {name: [] for name in names}
    for name, record in tagged:
      out[name].append(record)
    check(out)

  with TestPipeline(runner='FnApiRunner') as p:
    out = (p | 'P' >> beam.Create(data.lines(rows)),
           p | 'L' >> beam.Create([])) | Evaluate(config)
    tagged = [out[name] | f'Tag{name}' >> beam.Map(lambda r, n=name: (n, r))
              for name in names]
    assert_that(tagged | beam.Flatten(), matcher)


def _drift_config(baseline, **overrides):
  settings = dict(
      as_of=data.AS_OF, prediction_field='positive_review_probability',
      windows=(), baseline=baseline, drift_window='1d',
      drift_rules=(parse_drift_rule('psi>0.2'),
                   parse_drift_rule('reviews_chars:js>0.25')))
  settings.update(overrides)
  return EvaluationConfig(**settings)


def test_a_shifted_log_raises_the_drift_alert_and_the_unshifted_does_not():
  baseline = _baseline(_log(7, 900))

  def unshifted(got):
    assert len(got['drift']) == 27
    assert not any(d['alert'] for d in got['drift'])
    assert not got['alerts'] and not got['dead_letters']

  _run(_log(8, 900), _drift_config(baseline), unshifted)
  _run(_log(8, 900, shift=True), _drift_config(baseline), _shifted)


def _shifted(shifted):
  fired = {(d['window_start'][:10], d['feature'], d['metric'])
           for d in shifted['drift'] if d['alert']}
  # Only the last day moved: longer texts, higher scores.
  assert ('2026-01-03', 'reviews_chars', 'js') in fired
  assert ('2026-01-03', 'reviews_chars', 'psi') in fired
  assert ('2026-01-03', 'positive_review_probability', 'psi') in fired
  assert {day for day, _, _ in fired} == {'2026-01-03'}
  assert len(shifted['alerts']) == len(fired)
  assert {a['kind'] for a in shifted['alerts']} == {'drift'}
  # 3 days x 3 statistics x (psi, js, ks), every row of the shape.
  assert len(shifted['drift']) == 27
  for d in shifted['drift']:
    assert set(DRIFT_SHAPE.names) == set(d)
    assert d['count'] == 300
    assert d['threshold'] is None or d['rule'] in ('psi>0.2',
                                                   'reviews_chars:js>0.25')


def test_drift_needs_no_labels_and_equals_the_measures_on_numpy_bins():
  rows = _log(8, 600, shift=True, days=2)
  baseline = _baseline(_log(7, 600))
  spec = baseline['statistics']['reviews_chars']
  last_day = [len(data.json.loads(r['raw_data'])['instances'][0]['reviews'])
              for r in rows if r['time'].startswith('2026-01-02')]
  current = np.bincount(np.digitize(last_day, spec['edges']),
                        minlength=len(spec['edges']) + 1).tolist()
  _run(rows, _drift_config(baseline, drift_rules=()),
       lambda got: _check_on_numpy_bins(got, spec, current))


def _check_on_numpy_bins(got, spec, current):
  by = {(d['window_start'][:10], d['feature'], d['metric']): d
        for d in got['drift']}
  record = by[('2026-01-02', 'reviews_chars', 'js')]
  assert record['value'] == pytest.approx(
      distance.jensenshannon(spec['counts'], current, base=2))
  assert record['threshold'] is None and record['alert'] is False
  assert by[('2026-01-02', 'reviews_chars', 'ks')]['value'] == pytest.approx(
      drift_measures.ks_statistic(spec['counts'], current))


def test_a_baseline_window_of_the_log_itself_and_shadow_rows_apart():
  rows = _log(8, 900, shift=True)
  for r in rows[::10]:
    r['role'] = 'shadow'
  start = START.timestamp()
  _run(rows, _drift_config(None, baseline_window=(start, start + 86400)),
       _check_window_baseline)


def _check_window_baseline(got):
  slices = {(d['slice'], d['window_start'][:10]) for d in got['drift']}
  assert ('role=shadow', '2026-01-02') in slices
  assert ('all', '2026-01-01') in slices
  fired = {(d['window_start'][:10], d['slice']) for d in got['drift']
           if d['alert']}
  assert ('2026-01-03', 'all') in fired
  # The reference day against itself (its shadow tenth is too small a
  # sample to say anything).
  assert ('2026-01-01', 'all') not in fired


def test_sliding_windows_hold_each_row_in_every_window_that_covers_it():
  rows = _log(8, 900, shift=True)
  baseline = _baseline(_log(7, 900))

  def check(got):
    by = {(d['window_start'][:10], d['window_end'][:10], d['feature'],
           d['metric']): d for d in got['drift']}
    # 2-day windows starting every day: 2025-12-31 (holds day 1 only),
    # 01-01 (days 1, 2), 01-02 (days 2, 3), 01-03 (day 3 only).
    counts = {start: d['count'] for (start, _, f, m), d in by.items()
              if (f, m) == ('reviews_chars', 'psi')}
    assert counts == {'2025-12-31': 300, '2026-01-01': 600,
                      '2026-01-02': 600, '2026-01-03': 300}
    assert ('2026-01-02', '2026-01-04', 'reviews_chars', 'psi') in by
    fired = {start for (start, _, _, _), d in by.items() if d['alert']}
    assert fired == {'2026-01-02', '2026-01-03'}

  _run(rows, _drift_config(baseline, drift_window='2d/1d'), check)
