"""`python -m serving` as an operator runs it: a real process, real flags (or
Vertex AI's environment variables), SIGTERM to stop, a log to watch; plus the
book's reviews on the demo model when it exists."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from serving import config as serving_config
from serving.app import create_app
from harness.serving import running_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_MODEL = os.path.join(REPO, 'data', 'models', 'sentiment', '1')


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_help_and_bad_flags_are_instant_and_exit_2():
  started = time.monotonic()
  result = subprocess.run(
      [sys.executable, '-m', 'serving', '--model_dir', 'm', '--port', '-5'],
      cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      'python -m serving: error: argument --port: must be 0..65535, got -5')
  assert time.monotonic() - started < 10  # no TensorFlow import


def test_unloadable_model_is_one_line_and_exit_2(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'serving', '--model_dir', str(tmp_path)],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'python -m serving: error: --model_dir {tmp_path}: cannot load the '
      'model: ')


def start_server(args, env=None):
  """`python -m serving ARGS` with the log on a pipe."""
  return subprocess.Popen(
      [sys.executable, '-m', 'serving', *args], cwd=REPO,
      env={**os.environ, **(env or {})},
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(process, url, timeout=120):
  deadline = time.monotonic() + timeout
  while True:
    assert process.poll() is None, process.stdout.read()
    try:
      if httpx.get(url).status_code == 200:
        return
    except httpx.TransportError:
      pass
    assert time.monotonic() < deadline, 'server never became ready'
    time.sleep(0.2)


def stop_server(process):
  """SIGTERM, as a supervisor stops it; returns the log."""
  process.send_signal(signal.SIGTERM)
  try:
    return process.communicate(timeout=60)[0]
  except subprocess.TimeoutExpired:
    process.kill()
    return process.communicate()[0]


def test_server_process_serves_and_stops_cleanly_on_sigterm(
    tiny_model_dir, tmp_path):  # noqa: F811
  port = free_port()
  log_dir = tmp_path / 'log'
  process = start_server(
      ['--model_dir', tiny_model_dir, '--port', str(port),
       '--micro_batch_size', '16', '--prediction_log_dir', str(log_dir),
       '--log_level', 'warning'])
  base = f'http://127.0.0.1:{port}'
  try:
    wait_ready(process, f'{base}/readyz')
    response = httpx.post(f'{base}/v1/models/tiny:predict', json={
        'instances': [{'key': 'r1', 'reviews': 'a great film'}]})
    assert response.status_code == 200
    assert response.json()['predictions'][0]['key'] == 'r1'
  finally:
    output = stop_server(process)
  # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status
  # tells a supervisor why the process ended.
  assert process.returncode == -signal.SIGTERM, output
  # The graceful shutdown ran: it published the prediction log file.
  files = glob.glob(str(log_dir / '*.jsonl'))
  assert len(files) == 1
  with open(files[0], encoding='utf-8') as f:
    assert [json.loads(line)['key'] for line in f] == ['r1']


def test_vertex_ai_environment_alone_configures_the_server(tiny_model_dir):  # noqa: F811
  """As Vertex AI starts the container: no flags, only AIP_* variables. The
  log shows the model, its signatures, the address and the routes, then a
  summary at shutdown (INFO: the default level)."""
  port = free_port()
  predict_route = '/v1/endpoints/123/deployedModels/456:predict'
  process = start_server([], env={
      'AIP_HTTP_PORT': str(port), 'AIP_HEALTH_ROUTE': '/health',
      'AIP_PREDICT_ROUTE': predict_route, 'AIP_STORAGE_URI': tiny_model_dir})
  # 0.0.0.0 answers on every address: 127.0.0.2 is loopback on Linux too, but
  # a server bound to 127.0.0.1 alone would refuse it.
  host = '127.0.0.2' if sys.platform == 'linux' else '127.0.0.1'
  base = f'http://{host}:{port}'
  try:
    wait_ready(process, f'{base}/health')
    response = httpx.post(base + predict_route, json={
        'instances': [{'key': 'v1', 'reviews': 'a great film'}],
        'parameters': {'confidence': 0.5}})
    assert response.status_code == 200, response.text
    assert response.json()['predictions'][0]['key'] == 'v1'
    v2 = httpx.post(f'{base}/v2/models/tiny/versions/1/infer', json={
        'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [1],
                    'data': ['a great film']}]})
    assert v2.status_code == 200, v2.text
    assert httpx.post(base + predict_route, json={
        'instances': ['']}).status_code == 400
  finally:
    output = stop_server(process)
  assert process.returncode == -signal.SIGTERM, output
  for line in [
      f"model 'tiny' version 'tiny/1' (v2 version '1') loaded from "
      f'{tiny_model_dir}',
      "signature 'keyed_prediction': key string[None], reviews string[None] "
      '-> key string[None], positive_review_logits float32[None, 1], '
      'positive_review_probability float32[None, 1]',
      "signature 'serving_default': reviews string[None] -> ",
      f'listening on http://0.0.0.0:{port}: POST http://0.0.0.0:{port}'
      '/v1/models/tiny:predict, POST '
      f'http://0.0.0.0:{port}/v2/models/tiny/infer',
      f'Vertex AI routes: predict {predict_route}, health /health',
      f'Uvicorn running on http://0.0.0.0:{port}',
      'stopped after 2 requests answered (2 instances), 1 refused (4xx), '
      '0 failed (5xx)',
  ]:
    assert line in output, output


@pytest.mark.skipif(not os.path.exists(os.path.join(DEMO_MODEL,
                                                    'saved_model.pb')),
                    reason='demo model not built (python -m models.train_demo)')
def test_book_reviews_on_the_demo_model():
  config = serving_config.parse(['--model_dir', DEMO_MODEL])
  reviews = ['The film is based on a prize-winning novel.',
             'The film is fast moving and has several great action scenes.',
             'The film was very boring. I walked out half-way.']
  with running_server(create_app(config)) as base:
    response = httpx.post(f'{base}/v1/models/sentiment:predict',
                          json={'instances': reviews}, timeout=30)
  assert response.status_code == 200
  neutral, positive, negative = [
      p['positive_review_probability'] for p in response.json()['predictions']]
  # The book: positive > neutral > negative (0.85, 0.47, 0.16 there).
  assert positive > neutral > negative
  assert positive > 0.5 > negative
