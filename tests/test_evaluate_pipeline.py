"""python -m pipelines.evaluate end to end on files: outputs, report, exit
codes, summary counts and command-line errors."""
import json

import pytest

from pipelines import evaluate
from pipelines import launch
from tests import evaluation_data as data


def _write(path, rows):
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(path)


@pytest.fixture
def world(tmp_path):
  predictions, labels = data.binary_world(n_keys=200)
  predictions.append({'key': 'broken'})  # no version, time or prediction
  return {
      'predictions': _write(tmp_path / 'log.jsonl', predictions),
      'ground_truth': _write(tmp_path / 'labels.jsonl', labels),
      'output': str(tmp_path / 'eval'),
      'rows': (predictions, labels),
  }


def _argv(world, *extra):
  return ['--predictions', world['predictions'],
          '--ground_truth', world['ground_truth'],
          '--output', world['output'],
          '--prediction_field', 'positive_review_probability',
          '--as_of', data.AS_OF.isoformat(),
          '--key_segments', 'age,sex,id', *extra]


def _read(world, name):
  with open(f'{world["output"]}/{name}') as f:
    return [json.loads(l) for l in f]


def test_writes_slices_report_and_prints_accuracy_and_macro_f1(world, capsys):
  assert evaluate.run(_argv(world)) == 0
  printed = capsys.readouterr().out
  assert 'model sentiment version 1: accuracy 0.' in printed
  assert 'macro F1 0.' in printed
  slices = _read(world, 'slices.jsonl')
  names = {(s['model_version'], s['slice']) for s in slices}
  assert ('1', 'all') in names and ('2', 'window=7d sex=F') in names
  assert not any(s['segment_name'] == 'id' for s in slices)  # id: not a slice
  report = open(f'{world["output"]}/report.html').read()
  for png in ('confusion_sentiment_1.png', 'confusion_sentiment_2.png',
              'over_time_sentiment.png'):
    assert f'src="{png}"' in report
    with open(f'{world["output"]}/{png}', 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert len(_read(world, 'comparisons.jsonl')) == 1
  # Inputs = outputs + dead letters, from the run's own counters.
  counts = json.load(open(f'{world["output"]}/summary.json'))['counts']
  dead = _read(world, 'dead_letter.jsonl')
  predictions, labels = world['rows']
  assert counts['prediction_rows_read'] == len(predictions)
  assert counts['prediction_rows_read'] == counts['predictions_parsed'] + sum(
      d['stage'] == 'parse_prediction' for d in dead) == len(predictions)
  assert counts['label_rows_read'] == len(labels) == (
      counts['labels_matched'] + counts['labels_superseded']
      + sum(d['reason'] == 'unmatched_label' for d in dead))
  assert [d['reason'] for d in dead if d['stage'] == 'parse_prediction'] == [
      'missing_field']


def test_fail_on_alert_exits_with_the_alert_code(world, capsys):
  argv = _argv(world, '--alert', 'macro_f1<0.99', '--fail_on_alert')
  assert evaluate.run(argv) == evaluate.EXIT_ALERT != launch.EXIT_USAGE
  printed = capsys.readouterr().out
  assert 'ALERT sentiment 1 [all] macro_f1<0.99' in printed
  alerts = _read(world, 'alerts.jsonl')
  assert alerts and all(a['rule'] == 'macro_f1<0.99' for a in alerts)
  assert {'model', 'model_version', 'slice', 'metric', 'value',
          'threshold'} <= set(alerts[0])


def test_rule_that_does_not_fire_is_still_reported(world, capsys):
  argv = _argv(world, '--alert', 'macro_f1<0.01', '--fail_on_alert')
  assert evaluate.run(argv) == 0
  printed = capsys.readouterr().out
  assert "alert rule 'macro_f1<0.01': 0 fired," in printed
  assert _read(world, 'alerts.jsonl') == []


def test_batch_predict_records_are_evaluated_too(tmp_path, capsys):
  predictions = [{'key': f'k{i}', 'model_version': '3',
                  'predictions': {'positive_review_probability': p},
                  'predicted_at': '2026-01-05T00:00:00Z'}
                 for i, p in enumerate([0.9, 0.8, 0.2, 0.6])]
  labels = [{'key': f'k{i}', 'groundtruth': g} for i, g in enumerate(
      ['positive', 'positive', 'negative', 'negative'])]
  argv = ['--predictions', _write(tmp_path / 'p.jsonl', predictions),
          '--ground_truth', _write(tmp_path / 'g.jsonl', labels),
          '--output', str(tmp_path / 'out'), '--windows', '',
          '--prediction_field', 'positive_review_probability']
  assert evaluate.run(argv) == 0
  assert ('model unknown version 3: accuracy 0.7500  macro F1 0.7333'
          in capsys.readouterr().out)


@pytest.mark.parametrize('extra,flag', [
    (['--threshold', '1.5'], '--threshold'),
    (['--time_slices', 'day,year'], '--time_slices'),
    (['--windows', '7days'], '--windows'),
    (['--as_of', 'tomorrow'], '--as_of'),
    (['--segment_by', 'height'], '--segment_by'),
    (['--alert', 'f1_macro<0.8'], '--alert'),
    (['--alert', 'macro_f1<<0.8'], '--alert'),
    (['--negative_label', 'positive'], '--negative_label'),
])
def test_bad_flags_fail_while_constructing(world, extra, flag):
  with pytest.raises(launch.UsageError) as error:
    evaluate.run(_argv(world, *extra))
  assert error.value.flag == flag


def test_missing_required_flag_exits_with_usage_code(capsys):
  assert launch.main(evaluate.run, ['--output', 'x']) == launch.EXIT_USAGE
  assert '--predictions: is required' in capsys.readouterr().err


def test_missing_input_files_are_one_line_naming_the_flag(tmp_path, capsys):
  labels = _write(tmp_path / 'g.jsonl', [])
  code = launch.main(evaluate.run, [
      '--predictions', str(tmp_path / 'none-*.jsonl'),
      '--ground_truth', labels, '--output', str(tmp_path / 'out')])
  err = capsys.readouterr().err
  assert code == launch.EXIT_USAGE
  assert '--predictions: no files match' in err and 'Traceback' not in err
