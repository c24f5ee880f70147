"""The shadow gate: its decisions on figures (plain Python), and in a
streaming pipeline (TestStream) with real SavedModels built by the tests:
a good new version is promoted, a disagreeing, failing or broken one
(missing signature, corrupt files, raising on inference) is rejected with a
reason and serving continues with the live one; every key is predicted once
by exactly one live version. With labels, accuracy decides in place of
agreement: a disagreeing but right version is promoted, an agreeing but
less accurate one rejected."""
import dataclasses
import json
import shutil

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from common.config_error import ConfigError
from models.runtime import signatures as sigs
from tests import tiny_models
from tests.test_stream_predict import PAST_WALL_CLOCK
from tests.test_stream_predict import T0
from tests.test_stream_predict import streaming_pipeline
from transforms.inference.signature_handler import InferenceFailure
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.streaming import model_watch
from transforms.streaming.gate import GateRule
from transforms.streaming.gate import GateTally
from transforms.streaming.gated_inference import GateConfig
from transforms.streaming.gated_inference import GatedPredictStream
from transforms.streaming.gated_inference import signature_mismatch
from transforms.streaming.labels import Classes
from transforms.streaming.labels import LabelConfig
from transforms.streaming.labels import ParseLabels

P = 'positive_review_probability'


def _tally(rule, pairs, live_s=0.01, shadow_s=0.01):
  tally = GateTally(rule, P)
  live = [a if isinstance(a, InferenceFailure) else {P: a} for a, _ in pairs]
  shadow = [b if isinstance(b, InferenceFailure) else {P: b}
            for _, b in pairs]
  tally.add(live, shadow, live_s, shadow_s)
  return tally


def test_the_gate_waits_for_its_examples_then_promotes():
  rule = GateRule(min_examples=4, max_latency_ratio=1.5)
  assert _tally(rule, [(0.9, 0.8)] * 3).decide() is None
  promoted, reason = _tally(rule, [(0.9, 0.8), (0.1, 0.2)] * 2).decide()
  assert promoted and 'agreement 1.0000' in reason


@pytest.mark.parametrize('pairs, times, why', [
    ([(0.9, 0.1)] * 2 + [(0.9, 0.9)] * 8, (0.01, 0.01), 'agreement 0.8000'),
    ([(0.9, InferenceFailure('x'))] + [(0.9, 0.9)] * 99, (0.01, 0.01),
     'error rate 0.0100'),
    ([(0.9, 0.9)] * 10, (0.01, 0.02), 'p99 latency'),
])
def test_the_gate_rejects_on_each_figure(pairs, times, why):
  rule = GateRule(min_examples=10, min_agreement=0.9,
                  max_error_rate_increase=0.005, max_latency_ratio=1.5)
  promoted, reason = _tally(rule, pairs, *times).decide()
  assert not promoted and why in reason, reason


def test_figures_of_a_tally():
  tally = _tally(GateRule(min_examples=1),
                 [(0.9, 0.9), (InferenceFailure('x'), 0.2)], 0.002, 0.004)
  assert tally.figures() == {
      'examples': 2, 'agreement': 0.5, 'live_error_rate': 0.5,
      'shadow_error_rate': 0.0, 'live_p99_ms': 2.0, 'shadow_p99_ms': 4.0}


def test_versions_are_ordered_as_tf_serving_orders_them(tmp_path):
  for name in ('1', '2', '10', 'draft'):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'saved_model.pb').write_bytes(b'')
  (tmp_path / '11').mkdir()  # no saved_model.pb yet: not a version
  pattern = str(tmp_path / '*')
  assert [f.rsplit('/', 1)[-1] for f in model_watch.version_folders(
      pattern)] == ['draft', '1', '2', '10']
  live = str(tmp_path / '2')
  assert model_watch.newest_candidate(pattern, live, set()).endswith('/10')
  assert model_watch.newest_candidate(
      pattern, live, {str(tmp_path / '10')}) is None


# The pipeline cases: a store of versions, '1' live from the start.


@pytest.fixture(scope='module')
def store(tmp_path_factory, tiny_model_dir):
  root = tmp_path_factory.mktemp('store')
  good = root / 'good' / 'tiny'
  shutil.copytree(tiny_model_dir, good / '1')
  shutil.copytree(tiny_model_dir, good / '2')
  return root


def _store_with(root, name, make_version2):
  """root/name/tiny/1 (the good model) and /2 (made by make_version2):
  versions tiny/1 and tiny/2."""
  versions = root / name / 'tiny'
  shutil.copytree(root / 'good' / 'tiny' / '1', versions / '1')
  make_version2(versions / '2')
  return versions


def _run_gate(versions, n=40, min_examples=8, **rule):
  """Publishes n messages in batches of 4; returns nothing (asserts)."""
  live = str(versions / '1')
  signature = sigs.get_signature(live)
  handler = SignatureModelHandler(
      live, ['reviews'], feature_map={'reviews': 'text'},
      model_version='tiny/1', batch_size=4)
  config = GateConfig(str(versions / '*'),
                      GateRule(min_examples=min_examples, **rule), signature,
                      'tiny', poll_interval_s=0)
  stream = TestStream()
  for i in range(0, n, 4):
    stream.add_elements([(f'k{j:03d}', {'text': f'great film {j}'})
                         for j in range(i, i + 4)])
    stream.advance_processing_time(PAST_WALL_CLOCK if i == 0 else 1)
  stream.advance_watermark_to(T0).advance_watermark_to_infinity()
  p = streaming_pipeline()
  out = (p | stream | GatedPredictStream(handler, config, 4, 0.05,
                                         log_model_name='tiny',
                                         input_fields={'reviews': 'text'}))
  return p, out


def _versions_of(out):
  return out['predictions'] | beam.Map(lambda r: (r['key'],
                                                  r['model_version']))


def test_an_agreeing_version_is_promoted_and_serves_after(store):
  p, out = _run_gate(store / 'good' / 'tiny', max_latency_ratio=1000)

  def check(pairs):
    keys = sorted(k for k, _ in pairs)
    assert keys == [f'k{j:03d}' for j in range(40)], 'each key once'
    order = [v for _, v in sorted(pairs)]
    # version 1 until the gate's 8 shadowed messages, then version 2 only
    first_2 = order.index('tiny/2')
    assert first_2 >= 8 and set(order[first_2:]) == {'tiny/2'}, order

  assert_that(_versions_of(out), check, label='versions')
  # The shadow's first batch (4 messages) warms its graph and is not
  # counted: the gate decides on the next 8.
  assert_that(out['events'] | beam.Map(lambda e: (
      e['version'], e['event'], e['live_version'], e['examples'])),
              equal_to([('tiny/2', 'shadow', 'tiny/1', None),
                        ('tiny/2', 'promoted', 'tiny/1', 8)]), label='events')

  def roles(entries):
    assert set(entries) == {('tiny/1', 'live'), ('tiny/2', 'shadow'),
                            ('tiny/2', 'live')}
    assert entries.count(('tiny/2', 'shadow')) == 4 + 8

  assert_that(out['log'] | beam.FlatMap(lambda chunk: [
      (e['model_version'], e.get('role', 'live')) for _, e in chunk]),
              roles, label='log roles')
  p.run().wait_until_finish()


def _export_scaled(export_dir, weight):
  """A string model whose probability is the text length times `weight`:
  disagrees with the tiny sentiment model on most texts."""
  import tensorflow as tf

  class Scaled(tf.Module):

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name='reviews')])
    def serve(self, reviews):
      length = tf.cast(tf.strings.length(reviews), tf.float32)
      p = tf.reshape(tf.minimum(length * weight, 1.0), [-1, 1])
      return {P: p, 'positive_review_logits': p}

  module = Scaled()
  tf.saved_model.save(module, str(export_dir),
                      signatures={'serving_default': module.serve})


def _export_without_serving_default(export_dir):
  """The tiny model's kind of signature, exported under another name only."""
  import tensorflow as tf

  class Renamed(tf.Module):

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name='reviews')])
    def serve(self, reviews):
      p = tf.zeros([tf.size(reviews), 1])
      return {P: p, 'positive_review_logits': p}

  module = Renamed()
  tf.saved_model.save(module, str(export_dir),
                      signatures={'predict_v2': module.serve})


def _corrupt(export_dir, root):
  shutil.copytree(root / 'good' / 'tiny' / '1', export_dir)
  data = next((export_dir / 'variables').glob('variables.data-*'))
  data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


@pytest.mark.parametrize('name, make, why', [
    ('disagrees', lambda d, root: _export_scaled(d, 0.0), 'agreement'),
    ('other_outputs', lambda d, root: tiny_models.export_poison_model(d),
     'signature \'serving_default\' does not match'),
    ('corrupt', _corrupt, 'truncated or damaged'),
    ('missing_signature',
     lambda d, root: _export_without_serving_default(d),
     "has no signature 'serving_default'"),
    ('no_signature', lambda d, root: tiny_models.export_plain_model(d),
     'does not match'),
])
def test_a_bad_version_is_rejected_and_live_keeps_serving(store, name, make,
                                                          why):
  versions = _store_with(store, name, lambda d: make(d, store))
  p, out = _run_gate(versions, max_latency_ratio=1000)

  def live_only(pairs):
    assert sorted(pairs) == [(f'k{j:03d}', 'tiny/1') for j in range(40)]

  assert_that(_versions_of(out), live_only, label='live only')

  def check(events):
    assert [e['event'] for e in events][-1] == 'rejected', events
    assert why in events[-1]['reason'], events[-1]['reason']
    assert all(e['version'] == 'tiny/2' for e in events)

  assert_that(out['events'], check, label='events')
  p.run().wait_until_finish()


def test_a_version_raising_on_inference_is_rejected(store):
  """Same signature as live, fails on every call: its error rate."""
  import tensorflow as tf

  def export_raising(export_dir):

    class Raising(tf.Module):

      @tf.function(input_signature=[
          tf.TensorSpec([None], tf.string, name='reviews')])
      def serve(self, reviews):
        tf.debugging.Assert(tf.equal(tf.size(reviews), -1), ['broken'])
        p = tf.zeros([tf.size(reviews), 1])
        return {P: p, 'positive_review_logits': p}

    module = Raising()
    tf.saved_model.save(module, str(export_dir),
                        signatures={'serving_default': module.serve})

  versions = _store_with(store, 'raising', export_raising)
  p, out = _run_gate(versions, max_latency_ratio=1000)
  assert_that(_versions_of(out) | beam.Values(),
              equal_to(['tiny/1'] * 40), label='live only')
  assert_that(out['dead_letter'], equal_to([]), label='no dead letters')
  assert_that(out['events'] | beam.Map(lambda e: (
      e['event'], e['shadow_error_rate'], 'error rate 1.0000' in e['reason'])),
              equal_to([('shadow', None, False), ('rejected', 1.0, True)]),
              label='events')
  p.run().wait_until_finish()


def test_signature_mismatch_names_the_difference(tiny_model_dir,
                                                 plain_model_dir):
  live = sigs.get_signature(str(tiny_model_dir))
  other = sigs.get_signature(str(plain_model_dir))
  problem = signature_mismatch(live, other)
  assert "no input 'reviews'" in problem and "an extra input 'x'" in problem
  assert signature_mismatch(live, live) is None


# Labels: accuracy replaces agreement once enough shadowed messages are
# labelled (transforms/streaming/labels.py, gate.GateTally.label).


def _labelled_tally(rule, rows, labels=LabelConfig()):
  """rows: (key, live probability, shadow probability, label)."""
  tally = GateTally(rule, P, Classes(labels))
  tally.add([{P: a} for _, a, _, _ in rows], [{P: b} for _, _, b, _ in rows],
            0.01, 0.01, [k for k, _, _, _ in rows])
  joined = [tally.label(k, label) for k, _, _, label in rows]
  assert all(joined)
  return tally


def test_a_more_accurate_shadow_is_promoted_though_it_agrees_less():
  rule = GateRule(min_examples=10, min_agreement=0.9, min_labelled=10)
  # live says negative, the shadow positive, the labels positive
  rows = [(f'k{j}', 0.1, 0.9, 'positive') for j in range(10)]
  promoted, reason = _labelled_tally(rule, rows).decide()
  assert promoted and 'accuracy 1.0000 (live 0.0000)' in reason, reason
  # without labels the same pairs fail on agreement
  assert _tally(rule, [(0.1, 0.9)] * 10).decide()[0] is False


def test_an_agreeing_shadow_less_accurate_than_live_by_the_margin_is_rejected():
  rows = [(f'k{j}', 0.9, 0.9 if j else 0.1, 'positive') for j in range(10)]
  rule = GateRule(min_examples=10, min_agreement=0.8, min_labelled=10,
                  max_accuracy_drop=0.05)
  promoted, reason = _labelled_tally(rule, rows).decide()
  assert not promoted and "accuracy 0.9000 < live's 1.0000 - 0.05" in reason
  assert _labelled_tally(dataclasses.replace(rule, max_accuracy_drop=0.1),
                         rows).decide()[0] is True
  assert _tally(rule, [(0.9, 0.9)] * 9 + [(0.9, 0.1)]).decide()[0] is True


def test_a_shadow_exactly_at_the_margin_is_promoted():
  # live right on 16 of 20, the shadow on 14: 0.7 = 0.8 - 0.1
  rows = [(f'k{j}', 0.9 if j < 16 else 0.1, 0.9 if j < 14 else 0.1,
           'positive') for j in range(20)]
  rule = GateRule(min_examples=20, min_agreement=0.0, min_labelled=20,
                  max_accuracy_drop=0.1)
  assert _labelled_tally(rule, rows).decide()[0] is True


def test_too_few_labels_decide_on_agreement_and_say_so():
  rule = GateRule(min_examples=4, min_agreement=0.5, min_labelled=5)
  rows = [(f'k{j}', 0.1, 0.9, 'positive') for j in range(4)]
  tally = _labelled_tally(rule, rows)
  promoted, reason = tally.decide()
  assert not promoted and reason.startswith('agreement 0.0000')
  assert 'accuracy not counted: 4 labelled messages < min_labelled 5' in reason
  assert tally.figures()['labelled'] == 4
  assert tally.figures()['shadow_accuracy'] == 1.0


def test_a_label_counts_once_and_only_for_a_held_key():
  tally = _labelled_tally(GateRule(min_examples=1), [('a', 0.9, 0.9, 'x')],
                          LabelConfig(label_set=('x', 'y')))
  assert not tally.label('a', 'positive'), 'already labelled'
  assert not tally.label('never shadowed', 'positive')
  assert tally.labelled == 1


def test_decisions_and_labels_name_the_classes():
  classes = Classes(LabelConfig(label_set=('github', 'nytimes')))
  assert classes.of_decision(1) == 'nytimes'
  assert classes.of_decision(5) is None
  assert classes.of_decision(' GitHub ') == 'github'
  assert classes.of_decision('other') is None
  binary = Classes(LabelConfig(positive_label='good', negative_label='bad'))
  assert binary.of_decision(True) == 'good' and binary.label(False) == 'bad'
  with pytest.raises(ConfigError):
    LabelConfig(label_set=('only',))


def test_unreadable_label_messages_are_dropped():
  messages = [b'not json', b'[1]', b'{"groundtruth": "positive"}',
              b'{"key": "a"}', b'{"key": "b", "groundtruth": "maybe"}',
              b'\xff\xfe', b'{"key": 7, "groundtruth": " Positive"}',
              '{"key": "c", "groundtruth": false}']
  with beam.Pipeline() as p:
    assert_that(p | beam.Create(messages) | ParseLabels(LabelConfig()),
                equal_to([('7', 'positive'), ('c', 'negative')]))


def _store_scaled(root, name, live_weight, shadow_weight):
  versions = root / name / 'tiny'
  _export_scaled(versions / '1', live_weight)
  _export_scaled(versions / '2', shadow_weight)
  return versions


def _run_labelled_gate(versions, texts, truth, **rule):
  """Publishes texts (k000...) in batches of 4, each batch's labels
  (truth[j]) after it, through the gate with labels."""
  live = str(versions / '1')
  handler = SignatureModelHandler(
      live, ['reviews'], feature_map={'reviews': 'text'},
      model_version='tiny/1', batch_size=4)
  config = GateConfig(str(versions / '*'), GateRule(**rule),
                      sigs.get_signature(live), 'tiny', poll_interval_s=0,
                      labels=LabelConfig())
  stream = TestStream(output_tags=['messages', 'labels'])
  for i in range(0, len(texts), 4):
    batch = range(i, min(i + 4, len(texts)))
    stream.add_elements([(f'k{j:03d}', {'text': texts[j]}) for j in batch],
                        tag='messages')
    stream.advance_processing_time(PAST_WALL_CLOCK if i == 0 else 1)
    stream.add_elements([json.dumps({'key': f'k{j:03d}',
                                     'groundtruth': truth[j]}).encode()
                         for j in batch], tag='labels')
  for tag in ('messages', 'labels'):
    stream.advance_watermark_to(T0, tag=tag)
  stream.advance_watermark_to_infinity()
  p = streaming_pipeline()
  streams = p | stream
  labels = streams['labels'] | ParseLabels(config.labels)
  out = streams['messages'] | GatedPredictStream(handler, config, 4, 0.05,
                                                 labels=labels)
  return p, out


def _decided(out):
  return out['events'] | beam.Filter(lambda e: e['event'] != 'shadow') | (
      beam.Map(lambda e: (e['event'], e['examples'], e['labelled'],
                          e['live_accuracy'], e['shadow_accuracy'],
                          e['agreement'])))


def test_labels_promote_a_disagreeing_shadow_that_is_right(store):
  """Live always says negative, the shadow positive, the labels positive.
  The first shadowed batch warms the graph (its labels find no pair); the
  decision comes at the 32nd counted message, before the last batch's
  labels: 28 labelled."""
  versions = _store_scaled(store, 'labelled_right', 0.0, 1.0)
  p, out = _run_labelled_gate(versions, ['great film'] * 40,
                              ['positive'] * 40, min_examples=32,
                              min_labelled=20, max_latency_ratio=1000)
  assert_that(_decided(out), equal_to([('promoted', 32, 28, 0.0, 1.0, 0.0)]),
              label='events')

  def check(pairs):
    order = [v for _, v in sorted(pairs)]
    assert len(order) == 40 and order[-4:] == ['tiny/2'] * 4, order

  assert_that(_versions_of(out), check, label='versions')
  p.run().wait_until_finish()


def test_labels_reject_an_agreeing_shadow_that_is_less_accurate(store):
  """Live (0.05 x length) says negative for 'ok' only, the shadow (1.0 x
  length) always positive; the labels are live's: the shadow agrees on 29
  of 32 counted messages but is wrong on 3 of the 28 labelled."""
  versions = _store_scaled(store, 'labelled_wrong', 0.05, 1.0)
  texts = ['ok' if j % 10 == 0 else 'a long enough review' for j in range(40)]
  truth = ['negative' if t == 'ok' else 'positive' for t in texts]
  p, out = _run_labelled_gate(versions, texts, truth, min_examples=32,
                              min_labelled=20, min_agreement=0.85,
                              max_accuracy_drop=0.05, max_latency_ratio=1000)
  assert_that(_decided(out), equal_to([
      ('rejected', 32, 28, 1.0, round(25 / 28, 6), round(29 / 32, 6))]),
              label='events')
  assert_that(_versions_of(out) | beam.Values(), equal_to(['tiny/1'] * 40),
              label='live only')
  p.run().wait_until_finish()
