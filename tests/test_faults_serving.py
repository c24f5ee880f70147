"""The online endpoint overloaded: past --max_pending_requests it sheds load
at once with 503 + Retry-After, keeps serving what it admitted, answers its
health routes, and recovers when the load drops (serving.admission). The
10x-for-30-s overload with latency and memory figures is
benchmarks/serving_overload.py (make faults)."""
import concurrent.futures
import time

import httpx
import pytest

from harness.serving import error_of
from harness.serving import make_config
from harness.serving import running_server
from models.runtime import predictor as predictor_lib
from serving.admission import Admission
from serving.admission import Overloaded
from serving.app import create_app

WINDOW_MS = 2000


@pytest.fixture(scope='module')
def slow_server(tiny_model_dir):
  """Two places, and a micro-batch window that holds each admitted request
  for WINDOW_MS: the third concurrent request finds the server full."""
  app = create_app(make_config(
      tiny_model_dir, '--max_pending_requests', '2', '--micro_batch_size',
      '1000', '--micro_batch_timeout_ms', str(WINDOW_MS)),
                   predictor_lib.load(tiny_model_dir))
  with running_server(app) as base:
    yield base, app.state.service


def _post(base, text):
  """(response, when it came back)."""
  with httpx.Client(timeout=30) as client:
    response = client.post(f'{base}/v1/models/tiny:predict',
                           json={'instances': [text]})
  return response, time.monotonic()


def test_over_the_bound_requests_are_shed_at_once_and_the_rest_served(
    slow_server):
  base, service = slow_server
  with concurrent.futures.ThreadPoolExecutor(6) as pool:
    results = list(pool.map(lambda i: _post(base, f'film {i}'), range(6)))
    with httpx.Client(timeout=5) as client:  # while full
      assert client.get(f'{base}/readyz').status_code == 200
  served = [(r, s) for r, s in results if r.status_code == 200]
  shed = [(r, s) for r, s in results if r.status_code != 200]
  assert len(served) == 2 and len(shed) == 4
  for response, _ in shed:
    assert 'server overloaded' in error_of(response, 503)
    assert int(response.headers['retry-after']) >= 1
  for response, _ in served:
    assert len(response.json()['predictions']) == 1
  # Refused without waiting: before the admitted ones' batch was run.
  assert max(t for _, t in shed) < min(t for _, t in served)
  assert service.stats.total['shed'] == 4

  response, _ = _post(base, 'after the burst')  # recovered
  assert response.status_code == 200


def test_retry_after_is_the_time_to_finish_what_the_server_holds():
  now = [0.0]
  admission = Admission(2, clock=lambda: now[0])
  for _ in range(10):  # 10 requests finished in the last 5 s: 2 a second
    with admission.admit():
      now[0] += 0.5
  with admission.admit(), admission.admit():
    with pytest.raises(Overloaded) as full:
      with admission.admit():
        pass
  assert full.value.retry_after_s == 1  # 2 held / 2 a second
  assert admission.shed == 1 and admission.pending == 0
