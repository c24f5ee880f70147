"""The shadow gate: its decisions on figures (plain Python), and in a
streaming pipeline (TestStream) with real SavedModels built by the tests:
a good new version is promoted, a disagreeing, failing or broken one
(missing signature, corrupt files, raising on inference) is rejected with a
reason and serving continues with the live one; every key is predicted once
by exactly one live version."""
import shutil

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

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
