"""The Beam prediction-log writer (rows and sampling: test_prediction_log_record)."""
import glob
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from common.records.prediction_log import log_row
from common.records.prediction_log import sampled
from transforms.inference.prediction_log import PredictionLogRows
from transforms.inference.prediction_log import WritePredictionLog

TIME = '2026-01-05T10:00:00+00:00'


def _element(key, probability=0.75):
  return key, {'instance': {'reviews': f'text of {key}'},
               'prediction': {'positive_review_probability': probability},
               'model': 'sentiment', 'model_version': '1', 'time': TIME}


def test_rows_keep_only_sampled_keys():
  keys = [f'k{i}' for i in range(200)]
  expected = [log_row('sentiment', '1', k, {'reviews': f'text of {k}'},
                      {'positive_review_probability': 0.75}, TIME)
              for k in keys if sampled(k, 0.25)]
  assert 20 < len(expected) < 80
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = [[_element(k) for k in keys[i:i + 30]]
              for i in range(0, len(keys), 30)]
    rows = (p | beam.Create(chunks)
            | PredictionLogRows(0.25)
            | beam.FlatMap(lambda chunk: chunk))
    assert_that(rows, equal_to(expected))


def test_rate_outside_zero_one_is_refused():
  with pytest.raises(ValueError, match='sample_rate'):
    PredictionLogRows(1.5)


def test_written_log_is_json_lines_the_evaluation_reads(tmp_path):
  prefix = str(tmp_path / 'log' / 'prediction_log')
  with TestPipeline(runner='FnApiRunner') as p:
    _ = (p | beam.Create([[_element('a', 0.9)], [_element('b', 0.2)]])
         | WritePredictionLog(prefix))
  [path] = glob.glob(prefix + '-*.jsonl')
  rows = sorted((json.loads(l) for l in open(path)), key=lambda r: r['key'])
  assert [r['key'] for r in rows] == ['a', 'b']
  assert json.loads(rows[0]['raw_prediction']) == {
      'predictions': [{'positive_review_probability': 0.9}]}
  assert rows[0]['groundtruth'] is None
