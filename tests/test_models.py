"""The model side of the stateless serving function: signatures, tools, library."""
import concurrent.futures
import math
import os
import random
import subprocess
import sys

import pytest

from models import add_keyed_signature
from models.runtime import predictor
from models.runtime import signatures as sigs
GOOD = 'The film is fast moving and has several great action scenes.'
BORING = 'The film was very boring. I walked out half-way.'
# The book's third review, used by its serving examples.
MIXED = "The film is a bit slow, but the acting is excellent."


def test_golden_sentences_with_demo_model(demo_model_dir):
  p = predictor.load(demo_model_dir)
  good, boring, _ = p.predict([GOOD, BORING, MIXED])
  assert good['positive_review_probability'] > boring['positive_review_probability']
  assert good['positive_review_probability'] > 0.5 > boring['positive_review_probability']
  for out in (good, boring):
    assert out['positive_review_probability'] == pytest.approx(
        1 / (1 + math.exp(-out['positive_review_logits'])), rel=1e-5)


def test_demo_export_lists_both_signatures_in_saved_model_cli(demo_model_dir):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  shown = subprocess.run([cli, 'show', '--all', '--dir', demo_model_dir],
                         capture_output=True, text=True, check=True).stdout
  assert "signature_def['serving_default']" in shown
  assert "signature_def['keyed_prediction']" in shown
  assert "inputs['reviews']" in shown and "inputs['key']" in shown


def test_signature_specs_match_the_book(tiny_model_dir):
  found = sigs.read_signatures(tiny_model_dir)
  assert set(found) == {'serving_default', 'keyed_prediction'}
  default = found['serving_default']
  assert default.inputs == {'reviews': sigs.TensorSpec('string', (-1,))}
  assert set(default.outputs) == {
      'positive_review_logits', 'positive_review_probability'}
  assert default.outputs['positive_review_probability'].shape == (-1, 1)
  keyed = found['keyed_prediction']
  assert set(keyed.inputs) == {'key', 'reviews'}
  assert 'key' in keyed.outputs


def test_keyed_prediction_passes_keys_through_a_shuffled_batch(tiny_model_dir):
  p = predictor.load(tiny_model_dir)
  texts = ['great film', 'awful acting', 'loved it', 'dull mess',
           'a wonderful story', 'terrible waste'] * 3
  keyed = [{'key': f'k{i:02d}', 'reviews': t} for i, t in enumerate(texts)]
  random.Random(3).shuffle(keyed)
  by_key = {out['key']: out
            for out in p.predict(keyed, 'keyed_prediction')}
  assert sorted(by_key) == sorted(k['key'] for k in keyed)
  for instance in keyed:
    (default,) = p.predict([instance['reviews']])
    got = by_key[instance['key']]
    assert got['positive_review_probability'] == pytest.approx(
        default['positive_review_probability'], abs=1e-6)
    assert got['positive_review_logits'] == pytest.approx(
        default['positive_review_logits'], abs=1e-5)


def test_add_keyed_signature_to_a_default_only_model(plain_model_dir, tmp_path):
  assert set(sigs.read_signatures(plain_model_dir)) == {'serving_default'}
  out = str(tmp_path / 'keyed')
  found = add_keyed_signature.add_keyed_signature(plain_model_dir, out)
  assert set(found) == {'serving_default', 'keyed_prediction'}
  assert set(found['keyed_prediction'].inputs) == {'key', 'x'}
  p = predictor.load(out)
  assert p.predict([1.5, 4.0]) == [{'y': 3.0}, {'y': 8.0}]
  assert p.predict([{'key': 'b', 'x': 4.0}, {'key': 'a', 'x': 1.5}],
                   'keyed_prediction') == [
                       {'key': 'b', 'y': 8.0}, {'key': 'a', 'y': 3.0}]


def test_add_keyed_signature_command_refuses_a_missing_model(tmp_path, capsys):
  code = add_keyed_signature.main([str(tmp_path / 'none'), str(tmp_path / 'o')])
  assert code == 2
  assert 'does not exist' in capsys.readouterr().err


def test_show_signatures_prints_inputs_outputs_and_types(tiny_model_dir, capsys):
  from models import show_signatures
  assert show_signatures.main([tiny_model_dir]) == 0
  shown = capsys.readouterr().out
  assert "signature 'keyed_prediction'" in shown
  assert 'reviews' in shown and 'string[None]' in shown
  assert 'positive_review_probability' in shown and 'float32[None, 1]' in shown


@pytest.mark.parametrize('instances, signature, message', [
    (['x'], 'nope', "unknown signature 'nope'"),
    ([{'text': 'x'}], 'serving_default', "missing ['reviews']"),
    ([{'reviews': 'x', 'extra': 1}], 'serving_default', "unexpected ['extra']"),
    ([3], 'serving_default', "input 'reviews' expects string, got int"),
    (['ok', None], 'serving_default', 'instance 1'),
    (['no key'], 'keyed_prediction', 'send an object per instance'),
])
def test_predictor_errors_name_the_problem(tiny_model_dir, instances,
                                           signature, message):
  p = predictor.load(tiny_model_dir)
  with pytest.raises(ValueError, match=None) as raised:
    p.predict(instances, signature)
  assert message in str(raised.value)


def test_predictor_is_loaded_once_and_thread_safe(tiny_model_dir):
  p = predictor.load(tiny_model_dir)
  assert predictor.load(tiny_model_dir) is p
  texts = [f'great film number {i}' if i % 2 else f'awful film {i}'
           for i in range(64)]
  expected = [p.predict([t])[0] for t in texts]
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    got = list(pool.map(lambda t: p.predict([t])[0], texts))
  assert got == expected


def test_local_directory_is_used_without_importing_the_hub(
    tiny_model_dir, monkeypatch):
  # A local directory is used as it is: importing tensorflow_hub (and Keras
  # with it) would fail here, as it would cost every job on a local model.
  with monkeypatch.context() as m:
    m.setitem(sys.modules, 'tensorflow_hub', None)
    assert sigs.resolve_model_dir(tiny_model_dir) == tiny_model_dir
  # Anything else goes through tensorflow_hub.resolve, which downloads
  # tfhub.dev/Kaggle handles (unreachable here) and refuses a missing path.
  assert sigs.is_hub_handle('https://tfhub.dev/google/nnlm-en-dim50/2')
  assert not sigs.is_hub_handle(tiny_model_dir)
  with pytest.raises(OSError):
    sigs.resolve_model_dir(tiny_model_dir + '-missing')


def test_model_version_is_derived_from_the_path():
  assert sigs.default_model_version('data/models/sentiment/1') == 'sentiment/1'
  assert sigs.default_model_version('gs://b/models/sentiment/') == 'sentiment'
  assert sigs.default_model_version(
      'https://tfhub.dev/google/nnlm-en-dim50/2') == 'nnlm-en-dim50/2'
