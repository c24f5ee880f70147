"""evaluate fed bad rows and bad flags (issue #23): lines that are not text,
labels outside the label set, an output it cannot write."""
import base64
import json

import pytest

from pipelines import evaluate
from tests import evaluation_data as data
from tests.usage_errors import one_line_error


def _write(path, rows, extra=b''):
  path.write_bytes(b''.join(json.dumps(r).encode() + b'\n' for r in rows)
                   + extra)
  return str(path)


def _run(tmp_path, predictions, labels, *extra, label_bytes=b'',
         prediction_bytes=b''):
  tmp_path.mkdir(exist_ok=True)
  output = tmp_path / 'eval'
  code = evaluate.run([
      '--predictions', _write(tmp_path / 'p.jsonl', predictions,
                              prediction_bytes),
      '--ground_truth', _write(tmp_path / 'g.jsonl', labels, label_bytes),
      '--output', str(output), '--as_of', data.AS_OF.isoformat(),
      '--prediction_field', 'positive_review_probability',
      '--key_segments', 'age,sex,id', *extra])
  assert code == 0
  dead = [json.loads(l) for l in open(output / 'dead_letter.jsonl')]
  slices = [json.loads(l) for l in open(output / 'slices.jsonl')]
  counts = json.load(open(output / 'summary.json'))['counts']
  return dead, {(s['model_version'], s['slice']): s for s in slices}, counts


def test_lines_that_are_not_text_are_dead_letters_not_a_crash(tmp_path):
  predictions, labels = data.binary_world(n_keys=60)
  bad_prediction = b'{"key": "x1", "model_version": "\xff\xfe"}\n'
  bad_labels = (b'{"key": "x2", "groundtruth": "\\ud800"}\n'
                b'{"key": "x3", "groundtruth": "\xed\xa0\x80"}\n')
  dead, _, counts = _run(tmp_path, predictions, labels,
                         prediction_bytes=bad_prediction,
                         label_bytes=bad_labels)
  invalid = [d for d in dead if d['reason'] == 'invalid_text']
  assert len(invalid) == 3
  replayed = sorted(base64.b64decode(d['raw']) if d.get('raw_encoding')
                    else d['raw'].encode() for d in invalid)
  assert replayed == sorted([bad_prediction.rstrip(b'\n')] +
                            bad_labels.rstrip(b'\n').split(b'\n'))
  assert counts['prediction_rows_read'] == len(predictions) + 1
  assert counts['label_rows_read'] == len(labels) + 2


def test_labels_are_normalized_by_the_rules_or_dead_lettered(tmp_path):
  predictions, labels = data.binary_world(n_keys=150)
  clean_dead, clean, _ = _run(tmp_path / 'clean', predictions, labels)
  # The same labels, written the ways users write them, and some that are
  # no class of a binary model.
  variants = {'positive': [' positive ', 'POSITIVE', True],
              'negative': ['Negative', ' NEGATIVE', False]}
  messy = [dict(l) for l in labels]
  for i in range(6):
    messy[i]['groundtruth'] = variants[messy[i]['groundtruth']][i % 3]
  unknown = [{'key': messy[10]['key'], 'groundtruth': 'neutral',
              'labeled_at': '2026-12-31T00:00:00+00:00'},
             {'key': messy[11]['key'], 'groundtruth': 1,
              'labeled_at': '2026-12-31T00:00:00+00:00'}]
  dead, got, _ = _run(tmp_path / 'messy', predictions, messy + unknown)
  assert sorted(str(d['raw']['groundtruth']) for d in dead
                if d['reason'] == 'unknown_label') == ['1', 'neutral']
  def canonical(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)
  assert canonical(d for d in dead if d['reason'] != 'unknown_label') == (
      canonical(clean_dead))
  # Every slice is what the clean labels give: no extra class, AUC defined.
  def metrics(slices):
    return {k: (s['accuracy'], s['macro_f1'], s['roc_auc'], s['count'])
            for k, s in slices.items()}
  assert metrics(got) == metrics(clean)
  assert got[('1', 'all')]['roc_auc'] is not None
  assert {c['label'] for c in got[('1', 'all')]['per_class']} == {
      'positive', 'negative'}


def test_a_label_set_names_the_classes_of_a_multiclass_model(tmp_path):
  predictions, labels = data.multiclass_world(n_keys=30)
  labels[0]['groundtruth']['predictions'][0]['source'] = 'GitHub '
  labels[1]['groundtruth']['predictions'][0]['source'] = 'reddit'
  output = tmp_path / 'eval'
  assert evaluate.run([
      '--predictions', _write(tmp_path / 'p.jsonl', predictions),
      '--ground_truth', _write(tmp_path / 'g.jsonl', labels),
      '--output', str(output), '--as_of', data.AS_OF.isoformat(),
      '--prediction_field', 'source', '--windows', '',
      '--label_set', 'github,nytimes,techcrunch']) == 0
  dead = [json.loads(l) for l in open(output / 'dead_letter.jsonl')]
  assert [(d['key'], d['reason']) for d in dead] == [
      (labels[1]['key'], 'unknown_label')]
  (everything,) = [json.loads(l) for l in open(output / 'slices.jsonl')
                   if json.loads(l)['slice'] == 'all']
  assert {c['label'] for c in everything['per_class']} == {
      'github', 'nytimes', 'techcrunch'}


@pytest.mark.parametrize('extra, expected', [
    (['--output', '{file}/eval'], '--output: cannot write under'),
    (['--output', '/proc/eval'], '--output: cannot write under'),
    (['--label_set', 'positive'], '--label_set: name at least two classes'),
    (['--runnr', 'FnApiRunner'], "unknown flag '--runnr'"),
    (['--runner', 'NoSuchRunner'], "--runner: unknown runner"),
])
def test_bad_flags_are_one_line(tmp_path, capsys, extra, expected):
  (tmp_path / 'file').write_text('a file')
  predictions, labels = data.binary_world(n_keys=5)
  argv = ['--predictions', _write(tmp_path / 'p.jsonl', predictions),
          '--ground_truth', _write(tmp_path / 'g.jsonl', labels),
          '--output', str(tmp_path / 'eval')]
  argv += [a.format(file=tmp_path / 'file') for a in extra]
  assert expected in one_line_error(capsys, evaluate.run, argv)
