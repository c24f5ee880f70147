"""One model, three doors: the batch job, v1 predict and v2 infer agree.

The same keyed texts go through `pipelines.batch_predict` (the throughput
path), TF Serving's v1 :predict and the Open Inference Protocol's v2 /infer
(the latency path): every door returns the same keys with the same outputs
(to float tolerance), and refuses the same record (empty text) for the same
reason.
"""
import httpx
import pytest

from pipelines import batch_predict
from serving import config as serving_config
from serving.app import create_app
from harness.serving import running_server
from tests import batch_io

ROWS = [{'key': 'r1', 'text': 'The film is based on a prize-winning novel.'},
        {'key': 'r2', 'text': 'The film is fast moving and has several great '
                              'action scenes.'},
        {'key': 'r3', 'text': 'The film was very boring. I walked out '
                              'half-way.'},
        {'key': 'r4', 'text': 'great film'}]
EMPTY = {'key': 'r0', 'text': '   '}
OUTPUTS = ('positive_review_logits', 'positive_review_probability')


@pytest.fixture(scope='module')
def url(tiny_model_dir):  # noqa: F811
  config = serving_config.parse(['--model_dir', tiny_model_dir])
  with running_server(create_app(config)) as base:
    yield base


def through_batch(tmp_path, model_dir, signature):
  """{key: outputs} and {key: dead-letter reason} from the batch job."""
  pattern = batch_io.write_shards(tmp_path / 'in', [EMPTY, *ROWS], 'jsonl',
                                  num_shards=2)
  output = str(tmp_path / 'out' / 'predictions')
  figures = batch_predict.run([
      '--input', pattern, '--model_dir', model_dir, '--output', output,
      '--feature_map', 'reviews=text', '--signature', signature,
      '--runner', 'FnApiRunner'])
  assert figures['reconciled']
  predictions = {r['key']: r['predictions']
                 for r in batch_io.read_jsonl(output)}
  dead = {r['key']: r['reason']
          for r in batch_io.read_jsonl(output + '_errors')}
  return predictions, dead


def through_v1(client, base, signature, rows):
  response = client.post(f'{base}/v1/models/tiny:predict', json={
      'signature_name': signature,
      'instances': [{'key': r['key'], 'reviews': r['text']} for r in rows]})
  return response, lambda: {p['key']: p for p in response.json()['predictions']}


def through_v2(client, base, signature, rows):
  response = client.post(f'{base}/v2/models/tiny/infer', json={
      'parameters': {'signature_name': signature},
      'inputs': [
          {'name': 'key', 'datatype': 'BYTES', 'shape': [len(rows)],
           'data': [r['key'] for r in rows]},
          {'name': 'reviews', 'datatype': 'BYTES', 'shape': [len(rows)],
           'data': [r['text'] for r in rows]}]})

  def by_key():
    outputs = {o['name']: o['data'] for o in response.json()['outputs']}
    return {key: {name: data[i] for name, data in outputs.items()}
            for i, key in enumerate(outputs['key'])}
  return response, by_key


@pytest.mark.parametrize('signature', ['serving_default', 'keyed_prediction'])
def test_batch_v1_and_v2_give_the_same_keyed_outputs(
    tmp_path, tiny_model_dir, url, signature):
  batch, dead = through_batch(tmp_path, tiny_model_dir, signature)
  assert sorted(batch) == [r['key'] for r in ROWS]
  assert dead == {'r0': 'empty_text'}
  with httpx.Client(timeout=30) as client:
    for door in (through_v1, through_v2):
      response, by_key = door(client, url, signature, ROWS)
      assert response.status_code == 200, response.text
      online = by_key()
      assert sorted(online) == sorted(batch), door.__name__
      for key, outputs in online.items():
        assert outputs['key'] == key
        if signature == 'keyed_prediction':  # the model's own key output
          assert batch[key]['key'] == key
        for name in OUTPUTS:
          assert outputs[name] == pytest.approx(
              batch[key][name], rel=1e-5, abs=1e-6), (door.__name__, key)
      # The record the batch job dead-letters is refused online, by the
      # same rule, naming the instance and the batch job's reason.
      refused, _ = door(client, url, signature, [ROWS[0], EMPTY])
      assert refused.status_code == 400
      assert refused.json()['error'] == (
          "instance 1: field 'reviews': text is empty (empty_text)")
