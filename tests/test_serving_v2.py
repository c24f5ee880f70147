"""The Open Inference Protocol (KServe v2) routes over real HTTP.

Typed tensors in, typed tensors out, answered by the same Predictor (and
micro-batcher and prediction log) as v1: the happy paths compare v2 outputs
with `Predictor.predict` on the same texts.
"""
import concurrent.futures
import glob
import json
import math
import time

import httpx
import pytest

from models.runtime import predictor as predictor_lib
from serving.app import create_app
from harness.serving import failing_model_dir  # noqa: F401
from harness.serving import error_of
from harness.serving import make_config
from harness.serving import running_server

REVIEWS = ['The film is based on a prize-winning novel.',
           'The film is fast moving and has several great action scenes.',
           'The film was very boring. I walked out half-way.']
OUTPUTS = ['positive_review_logits', 'positive_review_probability']


@pytest.fixture(scope='module')
def predictor(tiny_model_dir):  # noqa: F811
  return predictor_lib.load(tiny_model_dir)


@pytest.fixture(scope='module')
def url(tiny_model_dir, predictor, tmp_path_factory):  # noqa: F811
  """A micro-batching server with a prediction log; yields (url, log dir)."""
  log_dir = tmp_path_factory.mktemp('v2') / 'log'
  app = create_app(make_config(
      tiny_model_dir, '--max_instances', '50', '--micro_batch_size', '32',
      '--micro_batch_timeout_ms', '20', '--prediction_log_dir', str(log_dir),
      '--prediction_log_max_seconds', '0.2'), predictor)
  with running_server(app) as base:
    yield base, log_dir


@pytest.fixture
def client():
  with httpx.Client(timeout=30) as c:
    yield c


def infer_url(base, model='tiny', version=None):
  path = f'/v2/models/{model}'
  if version is not None:
    path += f'/versions/{version}'
  return f'{base}{path}/infer'


def text_tensor(name, texts):
  return {'name': name, 'datatype': 'BYTES', 'shape': [len(texts)],
          'data': texts}


def by_name(response):
  return {o['name']: o for o in response['outputs']}


def test_health_and_server_metadata(url, client):
  base, _ = url
  assert client.get(f'{base}/v2/health/live').json() == {'live': True}
  ready = client.get(f'{base}/v2/health/ready')
  assert ready.status_code == 200 and ready.json() == {'ready': True}
  for path in ('/v2/models/tiny/ready', '/v2/models/tiny/versions/1/ready'):
    response = client.get(base + path)
    assert response.status_code == 200
    assert response.json() == {'name': 'tiny', 'ready': True}
  server = client.get(f'{base}/v2').json()
  assert server['name'] == 'resilient-serving'
  assert server['extensions'] == []


def test_model_metadata_has_datatypes_and_shapes(url, client):
  base, _ = url
  body = client.get(f'{base}/v2/models/tiny').json()
  assert body == client.get(f'{base}/v2/models/tiny/versions/1').json()
  assert body['name'] == 'tiny' and body['versions'] == ['1']
  assert body['platform'] == 'tensorflow_savedmodel'
  assert body['inputs'] == [
      {'name': 'reviews', 'datatype': 'BYTES', 'shape': [-1]}]
  assert body['outputs'] == [
      {'name': name, 'datatype': 'FP32', 'shape': [-1, 1]} for name in OUTPUTS]
  assert body['parameters'] == {
      'signature_name': 'serving_default',
      'signatures': 'keyed_prediction,serving_default'}
  keyed = client.get(f'{base}/v2/models/tiny',
                     params={'signature_name': 'keyed_prediction'}).json()
  assert [t['name'] for t in keyed['inputs']] == ['key', 'reviews']


def test_infer_bytes_in_fp32_out_equal_the_predictor(url, client, predictor):
  base, _ = url
  response = client.post(infer_url(base), json={
      'id': 'req-1', 'inputs': [text_tensor('reviews', REVIEWS)]})
  assert response.status_code == 200, response.text
  body = response.json()
  assert body['model_name'] == 'tiny' and body['model_version'] == '1'
  assert body['id'] == 'req-1'
  assert body['parameters'] == {'signature_name': 'serving_default'}
  outputs = by_name(body)
  assert list(outputs) == OUTPUTS
  offline = predictor.predict(REVIEWS)
  for name in OUTPUTS:
    assert outputs[name]['datatype'] == 'FP32'
    assert outputs[name]['shape'] == [3, 1]
    assert outputs[name]['data'] == pytest.approx(
        [p[name] for p in offline], rel=1e-5, abs=1e-6)
  logits = outputs['positive_review_logits']['data']
  for logit, probability in zip(logits,
                                outputs['positive_review_probability']['data']):
    assert math.isclose(probability, 1 / (1 + math.exp(-logit)), rel_tol=1e-5)


def test_nested_data_and_a_version_in_the_path(url, client):
  """Row-major data may come flat or nested; both mean the same tensor."""
  base, _ = url
  flat = client.post(infer_url(base), json={
      'inputs': [text_tensor('reviews', REVIEWS)]}).json()
  nested = client.post(infer_url(base, version='1'), json={
      'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [3],
                  'data': [[r] for r in REVIEWS]}]}).json()
  assert by_name(flat) == by_name(nested)
  assert len(flat['id']) == 32  # none given: the server makes one
  assert flat['id'] != nested['id']


def test_outputs_selects_and_orders(url, client):
  base, _ = url
  body = client.post(infer_url(base), json={
      'inputs': [text_tensor('reviews', REVIEWS[:1])],
      'outputs': [{'name': 'positive_review_probability'}]}).json()
  assert [o['name'] for o in body['outputs']] == ['positive_review_probability']


def test_client_keys_pass_by_the_model_and_come_back(url, client, predictor):
  base, _ = url
  body = client.post(infer_url(base), json={'inputs': [
      text_tensor('key', ['a', 'b']), text_tensor('reviews', REVIEWS[:2])]})
  outputs = by_name(body.json())
  assert list(outputs) == ['key', *OUTPUTS]
  assert outputs['key'] == {'name': 'key', 'datatype': 'BYTES', 'shape': [2],
                            'data': ['a', 'b']}
  ints = by_name(client.post(infer_url(base), json={'inputs': [
      {'name': 'key', 'datatype': 'INT64', 'shape': [2], 'data': [7, 8]},
      text_tensor('reviews', REVIEWS[:2])]}).json())
  assert ints['key']['datatype'] == 'INT64' and ints['key']['data'] == [7, 8]
  assert ints['positive_review_logits'] == outputs['positive_review_logits']


def test_keyed_signature_takes_the_key(url, client, predictor):
  base, _ = url
  body = client.post(infer_url(base), json={
      'parameters': {'signature_name': 'keyed_prediction'},
      'inputs': [text_tensor('key', ['k0', 'k1', 'k2']),
                 text_tensor('reviews', REVIEWS)]}).json()
  assert body['parameters'] == {'signature_name': 'keyed_prediction'}
  outputs = by_name(body)
  assert outputs['key']['data'] == ['k0', 'k1', 'k2']
  offline = predictor.predict(
      [{'key': f'k{i}', 'reviews': r} for i, r in enumerate(REVIEWS)],
      'keyed_prediction')
  assert outputs['positive_review_probability']['data'] == pytest.approx(
      [p['positive_review_probability'] for p in offline], rel=1e-5)


def test_concurrent_v1_and_v2_share_the_micro_batcher_and_the_log(url):
  """Interleaved v1 and v2 requests: each gets its own answers, and both
  land in the one prediction log, in the same row format."""
  base, log_dir = url

  def send(i):
    key = f'c{i}'
    with httpx.Client(timeout=30) as c:
      if i % 2:
        response = c.post(f'{base}/v1/models/tiny:predict', json={
            'instances': [{'key': key, 'reviews': REVIEWS[i % 3]}]})
        return key, response.json()['predictions'][0]['key']
      response = c.post(infer_url(base), json={'inputs': [
          text_tensor('key', [key]), text_tensor('reviews', [REVIEWS[i % 3]])]})
      return key, by_name(response.json())['key']['data'][0]

  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    answers = list(pool.map(send, range(16)))
  assert all(sent == got for sent, got in answers)

  def logged():
    rows = []
    for path in glob.glob(str(log_dir / '*.jsonl')):
      with open(path, encoding='utf-8') as f:
        rows += [json.loads(line) for line in f]
    return {row['key']: row for row in rows}
  deadline = time.monotonic() + 10
  while not {f'c{i}' for i in range(16)} <= set(logged()):
    assert time.monotonic() < deadline, 'rows never logged'
    time.sleep(0.05)
  rows = logged()
  v1_row, v2_row = rows['c1'], rows['c0']
  assert json.loads(v2_row['raw_data']) == {
      'instances': [{'key': 'c0', 'reviews': REVIEWS[0]}]}
  assert set(json.loads(v2_row['raw_prediction'])['predictions'][0]) == set(
      json.loads(v1_row['raw_prediction'])['predictions'][0])


# --- errors: the protocol's {"error": ...} with the right status -----------

@pytest.mark.parametrize('body, expected', [
    ([], 'request body must be a JSON object with "inputs", got list'),
    ({}, '"inputs" must be a non-empty list of tensors'),
    ({'inputs': []}, '"inputs" must be a non-empty list of tensors'),
    ({'inputs': [{'name': 'reviews', 'shape': [1], 'data': ['x']}]},
     'inputs[0] has no "datatype"'),
    ({'inputs': [{'name': 'review', 'datatype': 'BYTES', 'shape': [1],
                  'data': ['x']}]},
     "signature 'serving_default' has no input 'review'; it takes ['reviews']"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'FP32', 'shape': [1],
                  'data': [1.0]}]},
     "input 'reviews' has datatype FP32; the model takes BYTES"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [2, 1],
                  'data': ['a', 'b']}]},
     "input 'reviews' has shape [2, 1]; the model takes [-1] (-1: any size)"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [3],
                  'data': ['a', 'b']}]},
     "input 'reviews': shape [3] holds 3 elements, \"data\" has 2"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [0],
                  'data': []}]},
     'the inputs hold no instances (first dimension 0)'),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [-1],
                  'data': ['a']}]},
     "input 'reviews': \"shape\" must be a list of sizes >= 0"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [2],
                  'data': ['fine', 3]}]},
     "instance 1: input 'reviews' expects string, got int"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [2],
                  'data': ['fine', {'a': 1}]}]},
     "input 'reviews': \"data\" holds numbers, strings or booleans, not dict"),
    ({'inputs': [{'name': 'reviews', 'datatype': 'BYTES', 'shape': [2],
                  'data': ['fine', ' \t']}]},
     "instance 1: field 'reviews': text is empty (empty_text)"),
    ({'inputs': [text_tensor('reviews', ['a']), text_tensor('reviews', ['b'])]},
     "input 'reviews' is given twice"),
    ({'inputs': [text_tensor('key', ['a', 'b']),
                 text_tensor('reviews', ['x'])]},
     'inputs disagree on the number of instances (the first dimension): '
     "{'key': 2, 'reviews': 1}"),
    ({'inputs': [{'name': 'key', 'datatype': 'FP32', 'shape': [1],
                  'data': [1.5]}, text_tensor('reviews', ['x'])]},
     "input 'key' (client keys) must be BYTES or INT64 of shape [N]; got FP32"),
    ({'inputs': [text_tensor('reviews', ['x'])], 'outputs': [{'name': 'p'}]},
     "unknown outputs ['p']; signature 'serving_default' has "
     "['positive_review_logits', 'positive_review_probability']"),
    ({'inputs': [text_tensor('reviews', ['x'])], 'id': 5},
     '"id" must be a string, got int'),
    ({'inputs': [text_tensor('reviews', ['x'])], 'parameters': [1]},
     '"parameters" must be an object, got list'),
    ({'inputs': [text_tensor('reviews', ['x'])],
      'parameters': {'signature_name': 'nope'}},
     "unknown signature 'nope'; the model has: keyed_prediction, "
     'serving_default'),
    ({'inputs': [text_tensor('reviews', ['x'] * 51)]},
     '51 instances exceed the limit of 50 per request'),
])
def test_bad_requests_are_400_naming_the_problem(url, client, body, expected):
  base, _ = url
  error = error_of(client.post(infer_url(base), json=body), 400)
  assert error.startswith(expected), error


def test_unknown_model_version_method_and_content_type(url, client):
  base, _ = url
  body = {'inputs': [text_tensor('reviews', ['x'])]}
  assert error_of(client.post(infer_url(base, 'other'), json=body), 404) == (
      "model 'other' not found; this server serves 'tiny'")
  assert error_of(client.post(infer_url(base, version='2'), json=body), 404) == (
      "version '2' of model 'tiny' not found; this server serves version '1'")
  assert error_of(client.get(f'{base}/v2/models/other/ready'), 404)
  assert error_of(client.get(infer_url(base)), 405) == 'Method Not Allowed'
  error = error_of(client.post(infer_url(base), content=json.dumps(body),
                             headers={'content-type': 'text/plain'}), 415)
  assert error.startswith("Content-Type 'text/plain' is not supported")


def test_model_failure_is_a_500_naming_the_instance(failing_model_dir, client):  # noqa: F811
  config = make_config(failing_model_dir, '--model_name', 'parse')
  with running_server(create_app(config)) as base:
    ok = client.post(infer_url(base, 'parse'), json={
        'inputs': [text_tensor('text', ['1', '2.5'])]})
    assert by_name(ok.json())['value'] == {
        'name': 'value', 'datatype': 'FP32', 'shape': [2], 'data': [1.0, 2.5]}
    error = error_of(client.post(infer_url(base, 'parse'), json={
        'inputs': [text_tensor('text', ['1', '2', 'x', '3'])]}), 500)
  assert error.startswith('internal error during prediction; see the server '
                          'log for error id ')
  assert error.endswith('(the model fails on instance 2)')
