"""Sampled prediction logging: the writer thread, and end to end over HTTP."""
import datetime
import glob
import json
import os
import time

import httpx

from common.records.prediction_log import sampled
from serving import config as serving_config
from serving.app import create_app
from serving.prediction_log import IN_PROGRESS
from serving.prediction_log import PredictionLogWriter
from serving.prediction_log import sampling_id
from harness.serving import running_server

WHEN = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.timezone.utc)


def read_rows(directory):
  rows = []
  for path in sorted(glob.glob(os.path.join(directory, '*.jsonl'))):
    with open(path, encoding='utf-8') as f:
      rows.append([json.loads(line) for line in f])
  return rows


def test_writer_rotates_by_rows_and_publishes_on_close(tmp_path):
  writer = PredictionLogWriter(str(tmp_path), 'm', 'm/1', max_rows=3)
  writer.start()
  for i in range(7):
    writer.log([f'text {i}'], [f'k{i}'], [{'p': i}], WHEN)
  writer.close()
  files = read_rows(str(tmp_path))
  assert [len(rows) for rows in files] == [3, 3, 1]
  keys = [row['key'] for rows in files for row in rows]
  assert keys == [f'k{i}' for i in range(7)]
  assert not glob.glob(os.path.join(str(tmp_path), '*' + IN_PROGRESS))
  assert writer.rows_written == 7 and writer.dropped == 0


def test_writer_publishes_an_idle_file_after_max_seconds(tmp_path):
  writer = PredictionLogWriter(str(tmp_path), 'm', 'm/1', max_seconds=0.2)
  writer.start()
  writer.log(['a'], ['k'], [{'p': 1}], WHEN)
  deadline = datetime.datetime.now() + datetime.timedelta(seconds=10)
  while not glob.glob(os.path.join(str(tmp_path), '*.jsonl')):
    assert datetime.datetime.now() < deadline, 'file never published'
    time.sleep(0.01)
  assert read_rows(str(tmp_path)) == [[{
      'model': 'm', 'model_version': 'm/1',
      'time': '2026-11-25T12:00:00.000000Z', 'key': 'k',
      'raw_data': '{"instances":["a"]}',
      'raw_prediction': '{"predictions":[{"p":1}]}', 'groundtruth': None}]]
  writer.close()


def test_log_never_blocks_a_request_when_the_writer_is_behind(tmp_path):
  writer = PredictionLogWriter(str(tmp_path), 'm', 'm/1', queue_size=2)
  # Not started: nothing drains the queue, as if the disk were stuck.
  for _ in range(5):
    writer.log(['a'], ['k'], [{'p': 1}], WHEN)
  assert writer.dropped == 3


def test_unkeyed_instances_are_sampled_by_their_content():
  assert sampling_id('k1', {'reviews': 'x'}) == 'k1'
  assert (sampling_id(None, {'b': 1, 'a': 2}) ==
          sampling_id(None, {'a': 2, 'b': 1}) == '{"a":2,"b":1}')


def test_endpoint_logs_sampled_keys_in_the_evaluation_format(
    tiny_model_dir, tmp_path):  # noqa: F811
  log_dir = str(tmp_path / 'log')
  config = serving_config.parse([
      '--model_dir', tiny_model_dir, '--prediction_log_dir', log_dir,
      '--prediction_log_rate', '0.5', '--model_version', 'v7'])
  keys = [f'review-{i}' for i in range(40)]
  answered = {}
  with running_server(create_app(config)) as base, httpx.Client() as client:
    for start in range(0, 40, 8):
      response = client.post(f'{base}/v1/models/tiny:predict', json={
          'instances': [{'key': k, 'reviews': f'a great film {k}'}
                        for k in keys[start:start + 8]]})
      assert response.status_code == 200
      answered.update((p['key'], p) for p in response.json()['predictions'])
  rows = [row for rows in read_rows(log_dir) for row in rows]
  expected = [k for k in keys if sampled(k, 0.5)]
  assert 0 < len(expected) < len(keys)
  assert [row['key'] for row in rows] == expected
  last = rows[-1]
  assert last['model'] == 'tiny' and last['model_version'] == 'v7'
  assert last['groundtruth'] is None
  assert datetime.datetime.fromisoformat(last['time']).tzinfo is not None
  assert json.loads(last['raw_data']) == {'instances': [
      {'key': last['key'], 'reviews': f'a great film {last["key"]}'}]}
  for row in rows:
    assert json.loads(row['raw_prediction']) == {
        'predictions': [answered[row['key']]]}
