"""`python -m serving` as an operator runs it: a real process, real flags,
SIGTERM to stop; plus the book's reviews on the demo model when it exists."""
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


def test_server_process_serves_and_stops_cleanly_on_sigterm(
    tiny_model_dir, tmp_path):  # noqa: F811
  port = free_port()
  log_dir = tmp_path / 'log'
  process = subprocess.Popen(
      [sys.executable, '-m', 'serving', '--model_dir', tiny_model_dir,
       '--port', str(port), '--micro_batch_size', '16',
       '--prediction_log_dir', str(log_dir), '--log_level', 'warning'],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  base = f'http://127.0.0.1:{port}'
  try:
    deadline = time.monotonic() + 120
    while True:
      assert process.poll() is None, process.stdout.read()
      try:
        if httpx.get(f'{base}/readyz').status_code == 200:
          break
      except httpx.TransportError:
        pass
      assert time.monotonic() < deadline, 'server never became ready'
      time.sleep(0.2)
    response = httpx.post(f'{base}/v1/models/tiny:predict', json={
        'instances': [{'key': 'r1', 'reviews': 'a great film'}]})
    assert response.status_code == 200
    assert response.json()['predictions'][0]['key'] == 'r1'
  finally:
    process.send_signal(signal.SIGTERM)
    try:
      process.wait(60)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
  # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status
  # tells a supervisor why the process ended.
  assert process.returncode == -signal.SIGTERM, process.stdout.read()
  # The graceful shutdown ran: it published the prediction log file.
  files = glob.glob(str(log_dir / '*.jsonl'))
  assert len(files) == 1
  with open(files[0], encoding='utf-8') as f:
    assert [json.loads(line)['key'] for line in f] == ['r1']


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
