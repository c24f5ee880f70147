"""The online endpoint over real HTTP: a uvicorn server on loopback, httpx.

The point of the Lambda architecture is that online answers equal what the
batch path computes with the same Predictor, so the happy-path tests compare
HTTP predictions with `Predictor.predict` on the same instances.
"""
import concurrent.futures
import json
import logging
import math
import socket
import time

import httpx
import pytest

from models.runtime import predictor as predictor_lib
from serving.app import create_app
from harness.serving import failing_model_dir  # noqa: F401
from harness.serving import error_of
from harness.serving import make_config
from harness.serving import running_server

# The book's three reviews (05_resilience/serving_function.ipynb).
NEUTRAL = 'The film is based on a prize-winning novel.'
POSITIVE = 'The film is fast moving and has several great action scenes.'
NEGATIVE = 'The film was very boring. I walked out half-way.'
BOOK_REVIEWS = [NEUTRAL, POSITIVE, NEGATIVE]
OUTPUTS = {'positive_review_logits', 'positive_review_probability'}


@pytest.fixture(scope='module')
def predictor(tiny_model_dir):  # noqa: F811
  return predictor_lib.load(tiny_model_dir)


@pytest.fixture(scope='module')
def url(tiny_model_dir, predictor):  # noqa: F811
  app = create_app(make_config(tiny_model_dir, '--max_instances', '50',
                               '--max_body_bytes', '20000',
                               '--max_text_bytes', '1000'), predictor)
  with running_server(app) as base:
    yield base


@pytest.fixture(scope='module')
def batching(tiny_model_dir, predictor):  # noqa: F811
  """A micro-batching server with a long window, so concurrent requests
  really share model calls; yields (url, batcher)."""
  app = create_app(make_config(
      tiny_model_dir, '--micro_batch_size', '64',
      '--micro_batch_timeout_ms', '20'), predictor)
  with running_server(app) as base:
    yield base, app.state.batcher


@pytest.fixture
def client():
  with httpx.Client(timeout=30) as c:
    yield c


def predict_url(base, model='tiny'):
  return f'{base}/v1/models/{model}:predict'


def assert_close(actual, expected):
  assert actual.keys() == expected.keys()
  for name, value in expected.items():
    if isinstance(value, float):
      assert math.isclose(actual[name], value, rel_tol=1e-5, abs_tol=1e-6), name
    else:
      assert actual[name] == value, name


# --- happy paths -----------------------------------------------------------

def test_book_reviews_online_equal_offline(url, client, predictor):
  response = client.post(predict_url(url), json={
      'instances': [{'reviews': r} for r in BOOK_REVIEWS]})
  assert response.status_code == 200
  assert response.headers['content-type'] == 'application/json'
  predictions = response.json()['predictions']
  assert len(predictions) == 3
  offline = predictor.predict([{'reviews': r} for r in BOOK_REVIEWS])
  for online, expected in zip(predictions, offline):
    assert set(online) == OUTPUTS
    assert_close(online, expected)
    assert math.isclose(online['positive_review_probability'],
                        1 / (1 + math.exp(-online['positive_review_logits'])),
                        rel_tol=1e-5)
  _, positive, negative = predictions
  assert (positive['positive_review_probability'] >
          negative['positive_review_probability'])


def test_bare_values_for_a_single_input_signature(url, client):
  bare = client.post(predict_url(url), json={'instances': BOOK_REVIEWS})
  named = client.post(predict_url(url), json={
      'instances': [{'reviews': r} for r in BOOK_REVIEWS],
      'signature_name': 'serving_default'})
  assert bare.status_code == named.status_code == 200
  for a, b in zip(bare.json()['predictions'], named.json()['predictions']):
    assert_close(a, b)


def test_keys_come_back_first_and_do_not_reach_the_model(url, client,
                                                         predictor):
  instances = [{'key': 'n-1', 'reviews': NEUTRAL}, {'reviews': POSITIVE},
               {'key': 42, 'reviews': NEGATIVE}]
  response = client.post(predict_url(url), json={'instances': instances})
  assert response.status_code == 200
  predictions = response.json()['predictions']
  assert list(predictions[0])[0] == 'key' and predictions[0]['key'] == 'n-1'
  assert 'key' not in predictions[1]
  assert predictions[2]['key'] == 42
  offline = predictor.predict(BOOK_REVIEWS)
  for online, expected in zip(predictions, offline):
    assert_close({k: v for k, v in online.items() if k != 'key'}, expected)


def test_keyed_signature_takes_the_key_as_input(url, client, predictor):
  instances = [{'key': f'k{i}', 'reviews': r}
               for i, r in enumerate(BOOK_REVIEWS)]
  response = client.post(predict_url(url), json={
      'instances': instances, 'signature_name': 'keyed_prediction'})
  assert response.status_code == 200
  predictions = response.json()['predictions']
  assert [p['key'] for p in predictions] == ['k0', 'k1', 'k2']
  offline = predictor.predict(instances, 'keyed_prediction')
  for online, expected in zip(predictions, offline):
    assert set(online) == OUTPUTS | {'key'}
    assert_close(online, expected)


def _client_requests(base, client_id, requests=6):
  """One client's interleaved keyed requests; returns (sent, answered)."""
  sent, answered = [], []
  with httpx.Client(timeout=30) as c:
    for n in range(requests):
      texts = [BOOK_REVIEWS[(client_id + n + i) % 3]
               for i in range(1 + (client_id + n) % 4)]
      instances = [{'key': f'c{client_id}-r{n}-i{i}', 'reviews': t}
                   for i, t in enumerate(texts)]
      response = c.post(predict_url(base), json={'instances': instances})
      assert response.status_code == 200, response.text
      sent.append(instances)
      answered.append(response.json()['predictions'])
  return sent, answered


def _assert_every_client_got_its_own(base, predictor, clients=12):
  reference = dict(zip(BOOK_REVIEWS, predictor.predict(BOOK_REVIEWS)))
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    results = list(pool.map(lambda i: _client_requests(base, i),
                            range(clients)))
  count = 0
  for sent, answered in results:
    for instances, predictions in zip(sent, answered):
      assert [p['key'] for p in predictions] == [i['key'] for i in instances]
      for instance, prediction in zip(instances, predictions):
        assert_close({k: v for k, v in prediction.items() if k != 'key'},
                     reference[instance['reviews']])
      count += 1
  return count


def test_concurrent_clients_with_interleaved_keys(url, predictor):
  assert _assert_every_client_got_its_own(url, predictor) == 72


def test_micro_batching_merges_concurrent_requests_correctly(batching,
                                                             predictor):
  base, batcher = batching
  calls_before = batcher.batches
  requests = _assert_every_client_got_its_own(base, predictor)
  assert requests == 72
  # Twelve clients inside a 20 ms window: far fewer model calls than requests.
  assert 0 < batcher.batches - calls_before < requests


def test_micro_batching_keyed_signature(batching, client):
  base, _ = batching
  instances = [{'key': 'a', 'reviews': POSITIVE}]
  response = client.post(predict_url(base), json={
      'instances': instances, 'signature_name': 'keyed_prediction'})
  assert response.status_code == 200
  assert response.json()['predictions'][0]['key'] == 'a'


def test_a_bad_request_in_a_micro_batch_fails_alone(batching):
  """Good and bad requests merged into one batch: the bad one gets its own
  400 (instance index relative to its request), the good ones 200."""
  base, _ = batching
  good = {'instances': [{'key': 'g', 'reviews': POSITIVE}]}
  bad = {'instances': [{'reviews': NEUTRAL}, {'reviews': 7}]}
  bodies = [good, bad, good, good, bad, good]
  with httpx.Client(timeout=30) as c, \
       concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
    responses = list(pool.map(lambda b: c.post(predict_url(base), json=b),
                              bodies))
  for body, response in zip(bodies, responses):
    if body is good:
      assert response.status_code == 200
      assert response.json()['predictions'][0]['key'] == 'g'
    else:
      assert response.status_code == 400
      assert response.json()['error'] == (
          "instance 1: input 'reviews' expects string, got int")


# --- metadata, status, health ----------------------------------------------

def test_metadata_lists_signatures(url, client):
  response = client.get(f'{url}/v1/models/tiny/metadata')
  assert response.status_code == 200
  body = response.json()
  assert body['model_spec'] == {'name': 'tiny', 'version': 'tiny/1'}
  assert set(body['signatures']) == {'serving_default', 'keyed_prediction'}
  default = body['signatures']['serving_default']
  assert default['inputs'] == {'reviews': {'dtype': 'string', 'shape': [-1]}}
  assert default['outputs']['positive_review_probability'] == {
      'dtype': 'float32', 'shape': [-1, 1]}
  assert set(body['signatures']['keyed_prediction']['inputs']) == {
      'key', 'reviews'}


def test_status_health_and_readiness(url, client):
  status = client.get(f'{url}/v1/models/tiny')
  assert status.status_code == 200
  assert status.json()['model_version_status'][0]['state'] == 'AVAILABLE'
  assert client.get(f'{url}/healthz').json() == {'status': 'alive'}
  ready = client.get(f'{url}/readyz')
  assert ready.status_code == 200 and ready.json()['status'] == 'ready'


def test_vertex_ai_routes(tiny_model_dir, predictor, client):  # noqa: F811
  app = create_app(make_config(
      tiny_model_dir, '--predict_route', '/predict', '--health_route',
      '/health'), predictor)
  with running_server(app) as base:
    assert client.get(f'{base}/health').status_code == 200
    response = client.post(f'{base}/predict', json={
        'instances': [{'key': 'v', 'reviews': POSITIVE}],
        'parameters': {}})
    assert response.status_code == 200
    assert response.json()['predictions'][0]['key'] == 'v'


# --- errors: every one a JSON body naming the problem -----------------------

@pytest.mark.parametrize('content, expected', [
    (b'{"instances": [', 'malformed JSON'),
    (b'', 'empty request body'),
    (b'\xff\xfe\x00garbage', 'malformed JSON'),
    (b'[' * 5000 + b']' * 5000, 'malformed JSON: nested too deeply'),
    (b'["a review"]', 'request body must be a JSON object with "instances", '
                      'got list'),
    (b'{"signature_name": "serving_default"}', 'missing "instances"'),
    (b'{"inputs": {"reviews": ["x"]}}',
     'missing "instances" (the columnar "inputs" format is not supported)'),
    (b'{"instances": "a review"}', '"instances" must be a list, got str'),
    (b'{"instances": []}', '"instances" is empty'),
    (b'{"instances": ["x"], "signature_name": 3}',
     '"signature_name" must be a string, got int'),
])
def test_malformed_requests(url, client, content, expected):
  error = error_of(client.post(predict_url(url), content=content), 400)
  assert error.startswith(expected)


def test_unknown_signature_names_the_available_ones(url, client):
  error = error_of(client.post(predict_url(url), json={
      'instances': ['x'], 'signature_name': 'nope'}), 400)
  assert error == ("unknown signature 'nope'; the model has: "
                   'keyed_prediction, serving_default')


@pytest.mark.parametrize('body, expected', [
    ({'instances': [{'review': 'x'}]},
     "instance 0: signature 'serving_default' takes inputs ['reviews']; "
     "missing ['reviews'], unexpected ['review']"),
    ({'instances': ['fine', {'reviews': 'x', 'stars': 5}]},
     "instance 1: signature 'serving_default' takes inputs ['reviews']; "
     "missing [], unexpected ['stars']"),
    ({'instances': ['fine', 3.5]},
     "instance 1: input 'reviews' expects string, got float"),
    ({'instances': [{'reviews': ['a list']}]},
     "instance 0: input 'reviews' takes a scalar per instance, got shape [1]"),
    ({'instances': ['fine', [['nested']]]},
     "instance 1: input 'reviews' takes a scalar per instance, got shape "
     "[1, 1]"),
    ({'instances': [{'reviews': None}]},
     "instance 0: input 'reviews' expects string, got NoneType"),
    ({'instances': [{'reviews': 'x'}], 'signature_name': 'keyed_prediction'},
     "instance 0: signature 'keyed_prediction' takes inputs ['key', "
     "'reviews']; missing ['key'], unexpected []"),
    ({'instances': ['x'], 'signature_name': 'keyed_prediction'},
     "instance 0: signature 'keyed_prediction' takes named inputs ['key', "
     "'reviews']; send an object per instance"),
    ({'instances': [{'key': {'id': 1}, 'reviews': 'x'}]},
     'instance 0: "key" must be a string or an integer, got dict'),
    ({'instances': [{'key': True, 'reviews': 'x'}]},
     'instance 0: "key" must be a string or an integer, got bool'),
])
def test_wrong_inputs(url, client, body, expected):
  assert error_of(client.post(predict_url(url), json=body), 400) == expected


@pytest.mark.parametrize('instances, expected', [
    (['fine', ''], "instance 1: field 'reviews': text is empty (empty_text)"),
    ([{'key': 'k', 'reviews': ' \n\t '}],
     "instance 0: field 'reviews': text is empty (empty_text)"),
    (['fine', 'fine', 'x' * 1001],
     "instance 2: field 'reviews': 1001 bytes > limit 1000 (text_too_long)"),
    (['fine', 'é' * 501],
     "instance 1: field 'reviews': 1002 bytes > limit 1000 (text_too_long)"),
])
def test_texts_the_batch_job_dead_letters_are_refused(url, client, instances,
                                                      expected):
  """One rule for both paths: the batch job's (common.feature_rule)."""
  assert error_of(client.post(predict_url(url), json={
      'instances': instances}), 400) == expected


def test_an_empty_key_is_not_text(url, client):
  response = client.post(predict_url(url), json={
      'instances': [{'key': '', 'reviews': 'fine'}],
      'signature_name': 'keyed_prediction'})
  assert response.status_code == 200
  assert response.json()['predictions'][0]['key'] == ''


@pytest.mark.parametrize('content_type', [
    'text/plain', 'application/x-www-form-urlencoded', 'application/xml',
    'multipart/form-data; boundary=x'])
def test_a_body_that_is_not_json_is_415(url, client, content_type):
  body = json.dumps({'instances': ['fine']})
  error = error_of(client.post(predict_url(url), content=body,
                             headers={'content-type': content_type}), 415)
  assert error == (f"Content-Type {content_type.split(';')[0]!r} is not "
                   'supported; send the body as JSON with "Content-Type: '
                   'application/json"')


@pytest.mark.parametrize('content_type', [
    'application/json', 'application/json; charset=utf-8',
    'Application/JSON;charset=UTF-8'])
def test_json_with_or_without_a_charset_is_accepted(url, client,
                                                    content_type):
  response = client.post(predict_url(url), headers={
      'content-type': content_type}, content=json.dumps({'instances': ['ok']}))
  assert response.status_code == 200, response.text


def test_a_value_tensorflow_cannot_convert_names_its_instance(url, client):
  # A lone surrogate is valid JSON but not Unicode text: TensorFlow refuses
  # the whole column; the error names the instance.
  error = error_of(client.post(predict_url(url), content=(
      b'{"instances": ["fine", "fine", "bad \\ud800 text"]}')), 400)
  assert error == "instance 2: input 'reviews' is not valid Unicode text"


def test_an_integer_out_of_range_is_a_400_naming_its_instance(plain_model_dir,
                                                              client):
  config = make_config(plain_model_dir, '--model_name', 'plain')
  with running_server(create_app(config)) as base:
    ok = client.post(predict_url(base, 'plain'), json={'instances': [1, 2.5]})
    assert ok.json() == {'predictions': [{'y': 2.0}, {'y': 5.0}]}
    error = error_of(client.post(predict_url(base, 'plain'), content=(
        b'{"instances": [1.0, 2.0, 1' + b'0' * 400 + b']}')), 400)
  assert error == "instance 2: input 'x' is an integer out of range for float32"


def test_too_many_instances(url, client):
  error = error_of(client.post(predict_url(url), json={
      'instances': ['x'] * 51}), 400)
  assert error == '51 instances exceed the limit of 50 per request'
  assert client.post(predict_url(url), json={
      'instances': ['x'] * 50}).status_code == 200


def test_too_large_a_body(url, client):
  body = json.dumps({'instances': ['x' * 30000]}).encode()
  error = error_of(client.post(predict_url(url), content=body), 413)
  assert error == (f'request body of {len(body)} bytes exceeds the limit of '
                   '20000 bytes')


def test_too_large_a_chunked_body(url, client):
  """Without Content-Length the limit is enforced while reading."""
  def chunks():
    yield b'{"instances": ["'
    for _ in range(30):
      yield b'x' * 1000
    yield b'"]}'
  error = error_of(client.post(predict_url(url), content=chunks()), 413)
  assert error == 'request body exceeds the limit of 20000 bytes'


def test_unknown_model_route_and_method(url, client):
  error = error_of(client.post(predict_url(url, 'other'),
                             json={'instances': ['x']}), 404)
  assert error == "model 'other' not found; this server serves 'tiny'"
  assert error_of(client.get(f'{url}/v1/models/other/metadata'), 404)
  assert error_of(client.get(f'{url}/v2/anything'), 404) == 'Not Found'
  assert error_of(client.get(predict_url(url)), 405) == 'Method Not Allowed'


def test_model_failure_is_a_500_without_internals(failing_model_dir,  # noqa: F811
                                                  client):
  config = make_config(failing_model_dir, '--model_name', 'parse')
  with running_server(create_app(config)) as base:
    ok = client.post(predict_url(base, 'parse'), json={'instances': ['2.5']})
    assert ok.status_code == 200
    assert ok.json() == {'predictions': [{'value': 2.5}]}
    error = error_of(client.post(predict_url(base, 'parse'), json={
        'instances': ['2.5', 'not a number']}), 500)
    assert error.startswith('internal error during prediction; see the '
                            'server log for error id ')
    assert 'number' not in error and 'Traceback' not in error
    # ...and the server goes on serving.
    assert client.post(predict_url(base, 'parse'),
                       json={'instances': ['1']}).status_code == 200


def test_model_failure_names_the_instance_it_fails_on(failing_model_dir,  # noqa: F811
                                                     client):
  config = make_config(failing_model_dir, '--model_name', 'parse')
  with running_server(create_app(config)) as base:
    error = error_of(client.post(predict_url(base, 'parse'), json={
        'instances': ['1', '2', '3', 'x', '5', 'y']}), 500)
  assert error.startswith('internal error during prediction; see the '
                          'server log for error id ')
  assert error.endswith(' (the model fails on instance 3)')


def test_micro_batched_model_failure_hits_only_its_request(failing_model_dir,  # noqa: F811
                                                           client):
  config = make_config(failing_model_dir, '--model_name', 'parse',
                       '--micro_batch_size', '32',
                       '--micro_batch_timeout_ms', '50')
  app = create_app(config)
  bodies = [['1'], ['x'], ['2', '3'], ['4']]
  with running_server(app) as base, \
       concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
    responses = list(pool.map(
        lambda b: client.post(predict_url(base, 'parse'),
                              json={'instances': b}), bodies))
  assert [r.status_code for r in responses] == [200, 500, 200, 200]
  assert responses[2].json() == {'predictions': [{'value': 2.0},
                                                 {'value': 3.0}]}


def test_client_that_disconnects_mid_body_is_not_a_servererror_of(url, client,
                                                                caplog):
  host, port = url.removeprefix('http://').split(':')
  with socket.create_connection((host, int(port))) as raw:
    raw.sendall(b'POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n'
                b'Content-Type: application/json\r\n'
                b'Content-Length: 5000\r\n\r\n{"instances": ["')
  time.sleep(0.3)
  assert client.post(predict_url(url), json={
      'instances': [POSITIVE]}).status_code == 200
  assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_server_survives_everyerror_of(url, client):
  """After all the bad requests above (same module-scoped server), and a
  burst of garbage, it still answers correctly."""
  for content in (b'\x00' * 100, b'{"instances": [{}]}', b'null', b'1e999999'):
    assert client.post(predict_url(url), content=content).status_code == 400
  response = client.post(predict_url(url), json={'instances': [POSITIVE]})
  assert response.status_code == 200
  assert client.get(f'{url}/readyz').status_code == 200
