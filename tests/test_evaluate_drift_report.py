"""python -m pipelines.evaluate with a baseline: drift.jsonl, drift alerts,
calibration figures, and the report rendered headless, its PNGs decoded and
looked at (not blank)."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from common import feature_stats
from pipelines import evaluate
from pipelines import launch
from tests import test_evaluation_drift as drift_data


def _write(path, rows):
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(path)


@pytest.fixture
def world(tmp_path):
  reference = drift_data._log(7, 900)
  log = drift_data._log(8, 900, shift=True)
  labels = [{'key': r['key'], 'labeled_at': '2026-01-05T00:00:00Z',
             'groundtruth': 'positive' if i % 3 else 'negative'}
            for i, r in enumerate(log) if i % 2]
  baseline = tmp_path / feature_stats.FILE_NAME
  baseline.write_text(feature_stats.dumps(drift_data._baseline(reference)))
  return {
      'argv': ['--predictions', _write(tmp_path / 'log.jsonl', log),
               '--ground_truth', _write(tmp_path / 'labels.jsonl', labels),
               '--output', str(tmp_path / 'eval'),
               '--prediction_field', 'positive_review_probability',
               '--as_of', '2026-01-04T00:00:00+00:00'],
      'baseline': str(baseline), 'output': tmp_path / 'eval', 'log': log,
  }


def _read(output, name):
  with open(output / name) as f:
    return [json.loads(line) for line in f]


def _looked_at(path):
  """A decoded PNG: its size, and that it is not one flat colour."""
  image = np.asarray(Image.open(path).convert('RGB'))
  assert image.shape[0] > 100 and image.shape[1] > 100, path
  assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10, path
  return image


def test_drift_alert_fires_and_the_report_shows_drift_and_reliability(
    world, capsys):
  code = evaluate.run(world['argv'] + [
      '--baseline', world['baseline'], '--window', '1d',
      '--drift', 'psi>0.2', '--drift', 'reviews_chars:js>0.25',
      '--fail_on_alert'])
  assert code == evaluate.EXIT_ALERT
  printed = capsys.readouterr().out
  assert re.search(r'drift: 27 records over 3 windows of 1d, \d+ alerts',
                   printed)
  assert 'ALERT sentiment 1 [window=2026-01-03' in printed
  assert re.search(r'version 1: accuracy .* ECE 0\.\d+  Brier 0\.\d+',
                   printed)
  drift = _read(world['output'], 'drift.jsonl')
  fired = {(d['window_start'][:10], d['feature']) for d in drift
           if d['alert']}
  assert ('2026-01-03', 'reviews_chars') in fired
  assert {day for day, _ in fired} == {'2026-01-03'}
  alerts = _read(world['output'], 'alerts.jsonl')
  assert sorted(a['metric'] for a in alerts if a['kind'] == 'drift') == (
      sorted(f'{d["feature"]}:{d["metric"]}' for d in drift if d['alert']))

  overall = [s for s in _read(world['output'], 'slices.jsonl')
             if s['slice'] == 'all'][0]
  assert 0 <= overall['ece'] <= 1 and 0 <= overall['brier_score'] <= 1
  assert sum(b['count'] for b in overall['calibration']) == (
      overall['labelled'])

  report = (world['output'] / 'report.html').read_text()
  assert 'Drift from the baseline' in report
  for png in ('reliability_sentiment_1.png', 'drift_sentiment.png',
              'confusion_sentiment_1.png', 'over_time_sentiment.png'):
    assert f'src="{png}"' in report
    _looked_at(world['output'] / png)


def test_a_baseline_window_needs_no_baseline_file(world, capsys):
  assert evaluate.run(world['argv'] + [
      '--baseline_window', '2026-01-01/2026-01-02', '--drift', 'psi>0.2']) == 0
  drift = _read(world['output'], 'drift.jsonl')
  assert {d['window_start'][:10] for d in drift if d['alert']} == {
      '2026-01-03'}


def test_without_a_baseline_there_is_no_drift_output(world):
  assert evaluate.run(world['argv']) == 0
  assert not (world['output'] / 'drift.jsonl').exists()
  assert 'Drift' not in (world['output'] / 'report.html').read_text()


@pytest.mark.parametrize('extra,flag', [
    (['--drift', 'psi>0.2'], '--drift'),
    (['--baseline_window', '2026-01-02'], '--baseline_window'),
    (['--baseline_window', '2026-01-02/2026-01-01'], '--baseline_window'),
    (['--baseline_window', 'x/y'], '--baseline_window'),
    (['--window', '1 day'], '--window'),
    (['--window', '1d/2d'], '--window'),
    (['--baseline', 'no_such_baseline.json'], '--baseline'),
    (['--baseline', 'BASELINE', '--drift', 'auc>0.2'], '--drift'),
])
def test_bad_drift_flags_are_usage_errors(world, extra, flag):
  extra = [world['baseline'] if e == 'BASELINE' else e for e in extra]
  with pytest.raises(launch.UsageError) as error:
    evaluate.run(world['argv'] + extra)
  assert error.value.flag == flag


def test_a_file_that_is_not_a_baseline_is_a_usage_error(world, tmp_path):
  path = tmp_path / 'other.json'
  path.write_text('{"statistics": {}}')
  with pytest.raises(launch.UsageError, match='not a baseline'):
    evaluate.run(world['argv'] + ['--baseline', str(path)])


def test_a_sliding_window_is_size_over_period(world):
  assert evaluate.run(world['argv'] + [
      '--baseline', world['baseline'], '--window', '2d/1d']) == 0
  starts = {d['window_start'][:10] for d in _read(world['output'],
                                                  'drift.jsonl')}
  assert starts == {'2025-12-31', '2026-01-01', '2026-01-02', '2026-01-03'}
