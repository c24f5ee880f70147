"""Property-based tests of the serving request parser, through the app.

Whatever a client POSTs to either protocol's predict route, the answer is
a prediction per instance (200) or a JSON error naming the client's mistake
(400, 413, 415): never a 500, which would mean the parser let something
reach the model that it should have refused.
"""
import json

import httpx
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from harness.serving import make_config
from harness.serving import running_server
from models.runtime import predictor as predictor_lib
from serving.app import create_app
from tests import fuzz

CLIENT_ERRORS = {400, 413, 415}


@pytest.fixture(scope='module')
def client(tiny_model_dir):
  predictor = predictor_lib.load(tiny_model_dir)
  app = create_app(make_config(tiny_model_dir, '--max_instances', '8',
                               '--max_body_bytes', '4000',
                               '--max_text_bytes', '60'), predictor)
  with running_server(app) as base:
    with httpx.Client(base_url=base, timeout=30) as c:
      yield c


texts = st.one_of(fuzz.text, st.sampled_from(['a fine film', '', ' ']))
keys = st.one_of(fuzz.scalars, st.text(max_size=5))
instances = st.one_of(
    texts, fuzz.json_values,
    st.fixed_dictionaries({'reviews': texts}, optional={'key': keys}),
    st.dictionaries(st.sampled_from(['reviews', 'key', 'text']),
                    fuzz.json_values, max_size=3))
v1_bodies = st.one_of(
    st.fixed_dictionaries({'instances': st.lists(instances, max_size=10)},
                          optional={'signature_name': st.one_of(
                              st.sampled_from(['serving_default',
                                               'keyed_prediction', '']),
                              fuzz.json_values)}),
    fuzz.json_values)
tensors = st.fixed_dictionaries({
    'name': st.sampled_from(['reviews', 'key', 'x']),
    'datatype': st.sampled_from(['BYTES', 'INT64', 'FP32', 'BOOL', 'nope']),
    'shape': st.lists(st.integers(-2, 4), max_size=3),
    'data': st.one_of(st.lists(st.one_of(texts, fuzz.scalars), max_size=5),
                      fuzz.json_values)})
v2_bodies = st.one_of(
    st.fixed_dictionaries({'inputs': st.lists(tensors, max_size=3)},
                          optional={'id': fuzz.json_values,
                                    'parameters': fuzz.json_values,
                                    'outputs': fuzz.json_values}),
    fuzz.json_values)


def _body(value):
  return fuzz.as_json(value).encode('utf-8')


def _assert_answered(response, count=None):
  if response.status_code == 200:
    if count is not None:
      assert len(response.json()['predictions']) == count
    return
  assert response.status_code in CLIENT_ERRORS, response.text
  assert response.json()['error']


@given(st.one_of(v1_bodies.map(_body), st.binary(max_size=60)))
@example(b'{"instances": ["\\ud800"]}')
@example(b'{"instances": [{"reviews": "ok", "key": 1e400}]}')
def test_v1_predict_answers_or_names_the_mistake(client, body):
  response = client.post('/v1/models/tiny:predict', content=body,
                         headers={'content-type': 'application/json'})
  try:
    count = len(json.loads(body)['instances'])
  except (ValueError, TypeError, KeyError):
    count = None
  _assert_answered(response, count)


@given(st.one_of(v2_bodies.map(_body), st.binary(max_size=60)))
@example(b'{"inputs": [{"name": "reviews", "datatype": "BYTES", '
         b'"shape": [1], "data": ["\\ud800"]}]}')
def test_v2_infer_answers_or_names_the_mistake(client, body):
  response = client.post('/v2/models/tiny/infer', content=body,
                         headers={'content-type': 'application/json'})
  _assert_answered(response)
