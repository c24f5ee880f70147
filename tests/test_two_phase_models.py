"""The model side of two-phase predictions: tokenizer parity, the LiteRT
interpreter over many records, quantization, the forwarding rules."""
import random
import threading

import numpy as np
import pytest

from models.runtime import lite_predictor
from models.export import tflite as tflite_export
from models.runtime.tokenizer import Tokenizer
from models.train_two_phase import choose_band
from transforms.two_phase import forwarding
from tests.tiny_two_phase import tiny_phase1  # noqa: F401

WORDS = ['film', 'Movie', 'GREAT', 'awful', "don't", 'it\'s', 'e-mail',
         'U.S.A.', '(brilliant)', 'plot!', 'école', 'ÉCOLE', 'Straße', 'naïve',
         '日本語', 'emoji🙂', '<br', '/>', '#1', '50%', 'a_b', 'x~y', 'q&a',
         'İstanbul', 'ΣΊΣΥΦΟΣ', 'don’t', '"quoted"', '[UNK]', 'unk']
# ASCII whitespace splits tokens in TensorFlow; the others must not.
SEPARATORS = [' ', '  ', '\t', '\n', '\r\n', '\x0b', '\x0c', '\u00a0',
              '\u2009', '\u2028', '\x1c', '\x85', '\u3000']


def _random_texts(n, seed):
  rng = random.Random(seed)
  texts = []
  for _ in range(n):
    parts = []
    for _ in range(rng.randint(0, 30)):
      parts += [rng.choice(WORDS), rng.choice(SEPARATORS)]
    texts.append(''.join(parts))
  return texts + ['', '   ', '!!!', '\u00a0']


@pytest.fixture(scope='module')
def vectorizer():
  import keras
  import tensorflow as tf
  v = keras.layers.TextVectorization(max_tokens=40, output_sequence_length=16)
  v.adapt(tf.constant(_random_texts(300, seed=1)))
  return v


def test_tokenizer_reproduces_text_vectorization_on_many_texts(vectorizer):
  import tensorflow as tf
  texts = _random_texts(3000, seed=2)
  tokenizer = Tokenizer.from_vectorizer(vectorizer)
  expected = vectorizer(tf.constant(texts)).numpy()
  got = tokenizer.encode(texts)
  assert got.dtype == np.int32 and got.shape == expected.shape
  mismatched = [texts[i] for i in np.where((got != expected).any(axis=1))[0]]
  assert mismatched == []
  # The comparison is not vacuous: known, unknown and padded ids all occur.
  assert {0, 1} < set(np.unique(got)) and got.max() > 1


def test_tokenizer_round_trips_its_vocabulary_file(vectorizer, tmp_path):
  tokenizer = Tokenizer.from_vectorizer(vectorizer)
  tokenizer.save(tmp_path / 'tok.json')
  loaded = Tokenizer.load(tmp_path / 'tok.json')
  assert loaded.vocabulary == vectorizer.get_vocabulary()
  texts = _random_texts(200, seed=3)
  np.testing.assert_array_equal(loaded.encode(texts), tokenizer.encode(texts))


def test_tokenizer_truncates_pads_and_maps_unknown_words():
  tokenizer = Tokenizer(['', '[UNK]', 'good', 'film'], sequence_length=4)
  assert tokenizer.encode_one('Good FILM, good!') == [2, 3, 2, 0]
  assert tokenizer.encode_one('good zebra film good film') == [2, 1, 3, 2]
  assert tokenizer.encode(['', 'film']).tolist() == [[0, 0, 0, 0], [3, 0, 0, 0]]


def test_tokenizer_refuses_what_it_cannot_reproduce():
  import keras
  with pytest.raises(ValueError, match='ngrams'):
    Tokenizer.from_vectorizer(keras.layers.TextVectorization(
        ngrams=2, output_sequence_length=4))
  with pytest.raises(ValueError, match='padding'):
    Tokenizer(['a', 'b'], 4)


def test_interpreter_scores_many_records_in_batches(tiny_phase1):
  path, tokenizer, model = tiny_phase1
  import tensorflow as tf
  texts = [' '.join(random.Random(i).choices(
      ['great', 'film', 'awful', 'boring', 'loved', 'it', 'zebra'], k=i % 15))
           for i in range(2500)]
  predictor = lite_predictor.LitePredictor(path)
  batched = predictor.predict_texts(texts, batch_size=512)   # last batch 452
  assert batched.shape == (2500,)
  one_by_one = np.array([predictor.predict_texts([t])[0] for t in texts[:200]])
  np.testing.assert_allclose(batched[:200], one_by_one, atol=1e-6)
  odd = predictor.predict_texts(texts, batch_size=7)
  np.testing.assert_allclose(odd, batched, atol=1e-6)
  # Quantized scores stay close to the float Keras model's.
  float_scores = tf.sigmoid(model(tokenizer.encode(texts))).numpy().ravel()
  assert np.max(np.abs(batched - float_scores)) < 0.05
  assert 0.0 <= batched.min() and batched.max() <= 1.0
  assert batched.std() > 0.1   # a model that really separates the texts


def test_interpreter_is_safe_across_threads(tiny_phase1):
  path = tiny_phase1[0]
  predictor = lite_predictor.load(path)
  assert lite_predictor.load(path) is predictor   # loaded once per process
  texts = [f'great film {i}' if i % 2 else f'awful boring {i}'
           for i in range(400)]
  expected = predictor.predict_texts(texts, batch_size=64)
  results = {}

  def score(name, batch_size):
    results[name] = predictor.predict_texts(texts, batch_size=batch_size)
  threads = [threading.Thread(target=score, args=(i, 16 + 5 * i))
             for i in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  for got in results.values():
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_quantization_shrinks_the_model_to_under_a_third(tiny_phase1):
  _, tokenizer, model = tiny_phase1
  float_bytes = len(tflite_export.convert(model, tokenizer.sequence_length,
                                          quantize=False))
  quantized_bytes = len(tflite_export.convert(model, tokenizer.sequence_length,
                                              quantize=True))
  assert quantized_bytes <= float_bytes / 3


def test_a_model_whose_tokenizer_disagrees_is_refused(tiny_phase1, tmp_path):
  path = tiny_phase1[0]
  wrong = Tokenizer(['', '[UNK]', 'a'], sequence_length=5)
  with pytest.raises(ValueError, match='token ids'):
    lite_predictor.LitePredictor(path, wrong)


@pytest.mark.parametrize('text, rule', [
    ('uncertain:0.2,0.8', forwarding.ForwardRule('uncertain', 0.2, 0.8)),
    ('uncertain:0.5,0.5', forwarding.ForwardRule('uncertain', 0.5, 0.5)),
    ('positive:0.3', forwarding.ForwardRule('positive', 0.3, 0.3)),
])
def test_forward_rules_parse(text, rule):
  assert forwarding.parse_rule(text) == rule
  assert forwarding.parse_rule(str(rule)) == rule


@pytest.mark.parametrize('text', [
    '', 'uncertain', 'uncertain:0.8,0.2', 'uncertain:0.2', 'uncertain:a,b',
    'positive:0.2,0.3', 'positive:1.5', 'maybe:0.5', 'uncertain:-0.1,0.5'])
def test_bad_forward_rules_are_refused(text):
  with pytest.raises(ValueError):
    forwarding.parse_rule(text)


def test_uncertain_rule_forwards_only_the_band_inclusive():
  rule = forwarding.parse_rule('uncertain:0.2,0.8')
  decide = rule.phase1_decision
  assert [decide(s) for s in (0.0, 0.1999, 0.2, 0.5, 0.8, 0.8001, 1.0)] == [
      'negative', 'negative', None, None, None, 'positive', 'positive']


def test_positive_rule_screens_negatives_and_forwards_the_rest():
  decide = forwarding.parse_rule('positive:0.3').phase1_decision
  assert [decide(s) for s in (0.0, 0.2999, 0.3, 0.9, 1.0)] == [
      'negative', 'negative', None, None, None]
  assert forwarding.phase2_decision(0.5) == 'positive'
  assert forwarding.phase2_decision(0.4999) == 'negative'


def test_band_is_the_narrowest_that_keeps_phase2_accuracy():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 4000)
  p2 = np.where(labels == 1, 0.9, 0.1)               # phase 2 always right
  p1 = np.clip(labels * 0.5 + 0.25 + rng.normal(0, 0.12, 4000), 0, 1)
  low, high, fraction, accuracy = choose_band(p1, p2, labels)
  assert low < 0.5 < high and high - 0.5 == pytest.approx(0.5 - low)
  assert fraction <= 0.40
  assert accuracy >= 0.995
  # One step narrower would not have been accurate enough.
  margin = np.abs(p1 - 0.5)
  narrower = margin <= np.quantile(margin, fraction - 0.05)
  assert np.mean((np.where(narrower, p2, p1) >= 0.5) == labels) < 0.995


def test_report_measures_each_rule_and_checks_the_targets(
    tiny_phase1, tiny_model_dir):
  from models.runtime import predictor
  from models import two_phase_report
  texts = [f'great film {i}' if i % 3 else f'awful boring {i}'
           for i in range(300)]
  labels = [i % 3 != 0 for i in range(300)]
  report = two_phase_report.evaluate(
      texts, labels, lite_predictor.load(tiny_phase1[0]),
      predictor.load(tiny_model_dir),
      [forwarding.parse_rule('uncertain:0,1'),
       forwarding.parse_rule('uncertain:0.5,0.5')])
  everything, nothing = report['rules']
  # Forwarding everything is phase 2 alone; forwarding ~nothing is phase 1.
  assert everything['forward_rate'] == 1.0
  assert everything['cascade_accuracy'] == report['phase2_accuracy']
  assert nothing['forward_rate'] < 0.05
  assert abs(nothing['cascade_accuracy'] - report['phase1_accuracy']) <= 0.05
  assert report['phase2_records_per_s'] > 0 and report['records'] == 300
  report['conversion'] = {'size_ratio': 0.25}
  assert not two_phase_report.check_targets(report)   # 100% forwarded
  assert report['targets'] == {
      'cascade_within_1_point_of_phase2': True,
      'forward_rate_at_most_40_percent': False,
      'quantized_at_most_a_third_of_float': True}
