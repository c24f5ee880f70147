"""python -m models.baseline_stats: the baseline file beside a model
version, with the model's own vocabulary where the SavedModel holds one,
and the documented fallback where it does not."""
import json

import pytest

from common import feature_stats
from models import baseline_stats
from models.runtime.vocabulary import read_vocabulary
from tests import tiny_models


def _write(path, rows):
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(path)


def test_reads_the_vectorizer_vocabulary_out_of_the_saved_model(
    tiny_model_dir, plain_model_dir):
  words = read_vocabulary(str(tiny_model_dir))
  expected = {w.decode() for text in tiny_models.POSITIVE + tiny_models.NEGATIVE
              for w in feature_stats.tokens(text)}
  assert set(words) == expected
  assert read_vocabulary(str(plain_model_dir)) is None


def test_scores_the_input_and_writes_the_baseline_beside_the_model(
    tiny_model_dir, tmp_path, capsys):
  texts = tiny_models.POSITIVE + tiny_models.NEGATIVE + ['an unseen zebra']
  rows = [{'key': str(i), 'text': t, 'split': 'train' if i % 4 else 'test'}
          for i, t in enumerate(texts)]
  output = tmp_path / 'baseline_stats.json'
  assert baseline_stats.main([
      '--model_dir', str(tiny_model_dir),
      '--input', _write(tmp_path / 'in.jsonl', rows),
      '--feature_map', 'reviews=text', '--where', 'split=train',
      '--output', str(output)]) == 0
  assert 'baseline statistics:' in capsys.readouterr().out
  baseline = feature_stats.check_baseline(json.loads(output.read_text()))
  train = [r for r in rows if r['split'] == 'train']
  assert baseline['rows'] == len(train)
  assert baseline['vocabulary_source'] == 'model'
  statistics = baseline['statistics']
  assert statistics['positive_review_probability']['kind'] == 'probability'
  assert statistics['positive_review_logits']['kind'] == 'numeric'
  for name in ('reviews_chars', 'reviews_tokens', 'reviews_oov_rate',
               'positive_review_probability'):
    assert sum(statistics[name]['counts']) == len(train), name
  # 'an unseen zebra' (the last row, in the train split): 2 of 3 tokens OOV.
  assert train[-1]['text'] == 'an unseen zebra'
  oov = statistics['reviews_oov_rate']
  assert oov['counts'][feature_stats.bin_of(oov, 2 / 3)] >= 1


def test_a_prediction_log_and_a_model_without_vocabulary_fall_back(
    plain_model_dir, tmp_path, capsys):
  from common.records.prediction_log import log_row
  log = [log_row('m', '1', f'k{i}', {'title': f'big news number {i % 3}'},
                 {'score': (i % 10) / 10}, '2026-01-01T00:00:00Z')
         for i in range(60)]
  output = tmp_path / 'b.json'
  path = _write(tmp_path / 'log.jsonl', log)
  with open(path, 'a') as f:
    f.write('not json\n{"key": "x", "raw_prediction": "{broken"}\n')
  baseline_stats.main(['--model_dir', str(plain_model_dir), '--predictions',
                       path, '--output', str(output)])
  assert 'skipped 2 unreadable rows' in capsys.readouterr().out
  baseline = json.loads(output.read_text())
  assert baseline['vocabulary_source'] == 'baseline'
  assert baseline['vocabulary'] == ['0', '1', '2', 'big', 'news', 'number']
  # Three distinct short titles: a category, not a text.
  assert baseline['statistics']['title']['kind'] == 'categorical'
  assert 'title_chars' not in baseline['statistics']
  assert baseline['statistics']['score']['counts'] == [6] * 10


def test_needs_exactly_one_source(tmp_path):
  with pytest.raises(SystemExit):
    baseline_stats.main(['--model_dir', str(tmp_path)])
