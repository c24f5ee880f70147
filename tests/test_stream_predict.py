"""stream_predict's steps under TestStream (DirectRunner, streaming): the
batch job's checks on messages, one prediction per key per dedup window
(watermark), the batching wait bound, and messages in = predictions + dead
letters."""
import base64
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from models.runtime import signatures as sigs
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.keyed.keys import KeyRule
from transforms.streaming.dedup import DropRepeatedKeys
from transforms.streaming.messages import MessageRules
from transforms.streaming.messages import ParseMessages
from transforms.streaming.outcomes import StreamOutcomes
from transforms.streaming.predict import PredictStream

T0 = 1_700_000_000
# BatchElements sets its wait-bound timer from time.time(), while the
# DirectRunner's TestStream clock starts at 0: a TestStream passes the bound
# by advancing processing time beyond the wall clock (then by a little, to
# pass the timers set after that jump).
PAST_WALL_CLOCK = 4_000_000_000


def streaming_pipeline():
  options = PipelineOptions(runner='DirectRunner')
  options.view_as(StandardOptions).streaming = True
  return TestPipeline(options=options)


def message(key, text='great film', **extra):
  return json.dumps({'key': key, 'text': text, **extra}).encode()


def rules_for(model_dir, **kwargs):
  signature = sigs.get_signature(str(model_dir))
  return MessageRules(KeyRule('key'), signature.inputs, {'reviews': 'text'},
                      **kwargs)


def handler_for(model_dir, batch_size=4, wait_s=0.05):
  return SignatureModelHandler(
      str(model_dir), ['reviews'], feature_map={'reviews': 'text'},
      model_version='tiny/1', batch_size=batch_size,
      max_batch_duration_secs=wait_s)


BAD = [
    (b'not json', 'unparseable'),
    (b'\xff\xfe{"key": "x"}', 'invalid_text'),
    (json.dumps({'text': 'no key'}).encode(), 'missing_key'),
    (json.dumps({'key': 'w', 'text': 5}).encode(), 'wrong_type'),
    (json.dumps({'key': 'e', 'text': '  '}).encode(), 'empty_text'),
    (json.dumps({'key': 'l', 'text': 'x' * 300}).encode(), 'text_too_long'),
    (json.dumps({'key': 't', 'text': 'ok', 'ts': 'yesterday'}).encode(),
     'bad_timestamp'),
]


def test_messages_reconcile_with_the_batch_jobs_reasons(tiny_model_dir):
  good = [message(f'k{i}', ts=T0 + i) for i in range(6)]
  # Batches leave on the wait bound (processing time): TestStream's clock
  # must pass it before the watermark ends the global window.
  stream = (TestStream()
            .add_elements(good[:3] + [m for m, _ in BAD])
            .advance_watermark_to(T0 + 3)
            .add_elements(good[3:])
            .advance_processing_time(PAST_WALL_CLOCK)
            .advance_watermark_to(T0 + 10)
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  parsed = (p | stream | ParseMessages(rules_for(
      tiny_model_dir, timestamp_field='ts', max_text_bytes=200)))
  out = parsed.main | PredictStream(handler_for(tiny_model_dir))
  dead = (parsed.dead_letter, out['dead_letter']) | beam.Flatten()
  assert_that(out['predictions'] | beam.Map(
      lambda r: (r['key'], r['model_version'],
                 sorted(r['predictions']))),
              equal_to([(f'k{i}', 'tiny/1', ['positive_review_logits',
                                             'positive_review_probability'])
                        for i in range(6)]), label='predictions')
  assert_that(dead | beam.Map(lambda d: d['reason']),
              equal_to([reason for _, reason in BAD]), label='reasons')
  # Bytes that are not UTF-8 are kept, as base64, flagged.
  assert_that(dead | beam.Filter(lambda d: d.get('raw_encoding') == 'base64')
              | beam.Map(lambda d: base64.b64decode(d['raw'])),
              equal_to([BAD[1][0]]), label='raw bytes')
  p.run().wait_until_finish()


def test_event_time_comes_from_the_timestamp_field(tiny_model_dir):
  stream = (TestStream()
            .add_elements([message('a', ts=T0 + 5),
                           message('b', ts='2023-11-14T22:13:30+00:00')])
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  parsed = p | stream | ParseMessages(rules_for(tiny_model_dir,
                                                timestamp_field='ts'))
  stamped = parsed.main | beam.Map(
      lambda kv, t=beam.DoFn.TimestampParam: (kv[0], t.micros // 10**6))
  assert_that(stamped, equal_to([('a', T0 + 5), ('b', 1700000010)]))
  p.run().wait_until_finish()


def test_a_key_attribute_keys_the_message(tiny_model_dir):
  from apache_beam.io.gcp.pubsub import PubsubMessage
  stream = (TestStream()
            .add_elements([
                PubsubMessage(b'{"text": "great"}', {'id': 'attr-1'}),
                PubsubMessage(b'{"text": "great"}', {})])
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  parsed = p | stream | ParseMessages(rules_for(tiny_model_dir,
                                                key_attribute='id'))
  assert_that(parsed.main | beam.Keys(), equal_to(['attr-1']), label='keys')
  assert_that(parsed.dead_letter | beam.Map(
      lambda d: (d['reason'], 'key attribute' in d['error'])),
              equal_to([('missing_key', True)]), label='dead')
  p.run().wait_until_finish()


@pytest.mark.parametrize('shards', [None, 4])
def test_repeats_within_the_window_are_dead_letters_later_ones_predicted(shards):
  # window 10 s: 'a' at 0 kept, at 4 a repeat; the watermark passes 10, so
  # the state is cleared and 'a' at 12 is a new request; 'a' at 15 repeats it.
  stream = (TestStream()
            .add_elements([beam.window.TimestampedValue(('a', {'n': 0}), T0),
                           beam.window.TimestampedValue(('b', {'n': 1}), T0)])
            .add_elements([beam.window.TimestampedValue(('a', {'n': 2}),
                                                        T0 + 4)])
            .advance_watermark_to(T0 + 11)
            .add_elements([beam.window.TimestampedValue(('a', {'n': 3}),
                                                        T0 + 12)])
            .add_elements([beam.window.TimestampedValue(('a', {'n': 4}),
                                                        T0 + 15)])
            .advance_watermark_to(T0 + 30)
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  out = p | stream | DropRepeatedKeys(10, shards)
  assert_that(out.main | beam.Map(lambda kv: (kv[0], kv[1]['n'])),
              equal_to([('a', 0), ('b', 1), ('a', 3)]), label='kept')
  assert_that(out.dead_letter | beam.Map(
      lambda d: (d['key'], d['raw']['n'], d['reason'], d['stage'])),
              equal_to([('a', 2, 'duplicate_key', 'keys'),
                        ('a', 4, 'duplicate_key', 'keys')]), label='dead')
  p.run().wait_until_finish()


@pytest.mark.parametrize('shards', [None, 4])
def test_a_key_predicted_again_is_timed_from_its_latest_prediction(shards):
  # window 10 s: 'a' at 0 kept; 'a' at 12 arrives before the watermark
  # passes 10 (0's state not cleared yet), is past 0's window: kept, and
  # from then on timed from 12, so 'a' at 15 repeats it; once the watermark
  # passes 10 only 0's entry is cleared: 'a' at 20 still repeats 12.
  stream = (TestStream()
            .add_elements([beam.window.TimestampedValue(('a', {'n': 0}), T0)])
            .add_elements([beam.window.TimestampedValue(('a', {'n': 1}),
                                                        T0 + 12)])
            .add_elements([beam.window.TimestampedValue(('a', {'n': 2}),
                                                        T0 + 15)])
            .advance_watermark_to(T0 + 11)
            .add_elements([beam.window.TimestampedValue(('a', {'n': 3}),
                                                        T0 + 20)])
            .advance_watermark_to(T0 + 30)
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  out = p | stream | DropRepeatedKeys(10, shards)
  assert_that(out.main | beam.Map(lambda kv: (kv[0], kv[1]['n'])),
              equal_to([('a', 0), ('a', 1)]), label='kept')
  assert_that(out.dead_letter | beam.Map(lambda d: d['raw']['n']),
              equal_to([2, 3]), label='dead')
  p.run().wait_until_finish()


@pytest.mark.parametrize('shards', [None, 4])
def test_many_keys_in_one_bundle_each_kept_once(shards):
  # Each key sent twice in one bundle (many keys per shard with 4): every
  # first kept, every second a dead letter, whichever shard holds it.
  sent = [(f'k{i:03d}', {'n': i}) for i in range(300)] * 2
  stream = (TestStream()
            .add_elements([beam.window.TimestampedValue(kv, T0)
                           for kv in sent])
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  out = p | stream | DropRepeatedKeys(10, shards)
  assert_that(out.main | beam.Keys(),
              equal_to([f'k{i:03d}' for i in range(300)]), label='kept')
  assert_that(out.dead_letter | beam.Map(lambda d: d['key']),
              equal_to([f'k{i:03d}' for i in range(300)]), label='dead')
  p.run().wait_until_finish()


def test_the_wait_bound_sends_a_partial_batch(tiny_model_dir):
  # Batches of up to 100; three messages, then processing time past the
  # bound (0.5 s) with nothing, then three more: two batches of three.
  # Without the bound the six would wait for a batch of 100 together.

  class Sizes(beam.DoFn):
    def process(self, batch):
      yield len(batch)

  stream = (TestStream()
            .add_elements([('a', 1), ('b', 2), ('c', 3)])
            .advance_processing_time(PAST_WALL_CLOCK)
            .advance_watermark_to(T0)
            .add_elements([('d', 4), ('e', 5), ('f', 6)])
            .advance_processing_time(2)
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  batches = p | stream | beam.BatchElements(
      min_batch_size=100, max_batch_size=100, max_batch_duration_secs=0.5)
  assert_that(batches | beam.ParDo(Sizes()), equal_to([3, 3]))
  p.run().wait_until_finish()


def test_outcomes_name_every_message():
  rules = MessageRules(KeyRule('key'), {})
  outcomes = StreamOutcomes(rules)
  good = message('k1')
  assert ('key', 'k1') in outcomes.message_keys(good)
  assert outcomes.outcome_key(json.dumps(
      {'key': 'k1', 'model_version': 'v', 'predictions': {}}).encode()) == (
          'key', 'k1')
  for data in (b'not json', b'\xff\xfe', json.dumps({'text': 'x'}).encode()):
    from transforms.streaming.messages import _ParseMessage  # the same raw
    dead = [o.value for o in _ParseMessage(rules).process(data)]
    payload = json.dumps(dead[0]).encode()
    assert outcomes.outcome_key(payload) in outcomes.message_keys(data)
  assert outcomes.outcome_key(b'{"event": "promoted"}') is None


SUB = 'projects/p/subscriptions/s'
TOPIC = 'projects/p/topics/'
GATED = ['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
         '--watch_models', 'models/*', '--model_events', 'out/events']
LABELLED = GATED + ['--labels_subscription', SUB + 'l']


@pytest.mark.parametrize('extra, flag', [
    ([], '--output_topic'),
    (['--output_topic', TOPIC + 'o'], '--dead_letter_topic'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--watch_models', 'models/*'], '--watch_models'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--model_events_topic', TOPIC + 'e'], '--model_events_topic'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--max_batch_wait_ms', '0'], '--max_batch_wait_ms'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--key_attribute', 'id', '--attach_keys', 'content_hash'],
     '--key_attribute'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--watch_models', 'models/*', '--model_events', 'out/events',
      '--min_agreement', '2'], '--min_agreement'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--signature', 'nope'], '--signature'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--labels_subscription', SUB + 'l'], '--labels_subscription'),
    (GATED + ['--max_accuracy_drop', '0.1'], '--max_accuracy_drop'),
    (LABELLED + ['--label_set', 'a'], '--label_set'),
    (LABELLED + ['--negative_label', 'positive'], '--negative_label'),
    (LABELLED + ['--min_labelled', '0'], '--min_labelled'),
    (LABELLED + ['--shadow_min_examples', '50'], '--min_labelled'),
    # Outputs that cannot be written: one line when the job is built.
    (['--output', '/proc/predictions'], '--output'),
    (['--output_topic', TOPIC + 'o', '--dead_letter', '/sys/dead'],
     '--dead_letter'),
    (['--output_topic', TOPIC + 'o', '--dead_letter_topic', TOPIC + 'd',
      '--prediction_log', '/proc/log'], '--prediction_log'),
    (GATED[:4] + ['--watch_models', 'models/*', '--model_events',
                  '/proc/events'], '--model_events'),
])
def test_a_bad_command_line_is_one_line_and_exit_2(tiny_model_dir, capsys,
                                                   extra, flag):
  from pipelines import stream_predict
  code = stream_predict.main(['--input_subscription', SUB, '--model_dir',
                              str(tiny_model_dir), '--feature_map',
                              'reviews=text'] + extra)
  errors = [line for line in capsys.readouterr().err.splitlines()
            if 'error:' in line]
  assert code == 2 and len(errors) == 1 and f'error: {flag}:' in errors[0], (
      errors)


def test_windowed_files_hold_every_record_even_with_old_event_times(tmp_path):
  from transforms.io.sinks import WriteWindowedJsonLines
  # Event times a day behind the watermark: windows by write time keep them.
  stream = (TestStream()
            .advance_watermark_to(T0 + 86400)
            .add_elements([beam.window.TimestampedValue({'key': f'k{i}'}, T0)
                           for i in range(5)])
            .advance_watermark_to_infinity())
  p = streaming_pipeline()
  _ = p | stream | WriteWindowedJsonLines(str(tmp_path / 'out'), 60)
  p.run().wait_until_finish()
  lines = [json.loads(line) for f in tmp_path.glob('out-*.jsonl')
           for line in f.read_text().splitlines()]
  assert sorted(r['key'] for r in lines) == [f'k{i}' for i in range(5)]


def test_a_prediction_log_row_names_its_role_only_when_given():
  from common.records.prediction_log import log_row
  live = log_row('m', 'm/1', 'k', {}, {}, T0)
  assert 'role' not in live
  assert log_row('m', 'm/2', 'k', {}, {}, T0, role='shadow')['role'] == (
      'shadow')
  with pytest.raises(ValueError):
    log_row('m', 'm/2', 'k', {}, {}, T0, role='canary')


def test_labels_flags_make_the_gate_read_and_join_labels(tiny_model_dir):
  from pipelines import flags
  from pipelines import launch
  from pipelines import stream_predict
  from transforms.streaming.labels import LabelConfig
  sub, topic = ('projects/demo-project/subscriptions/',
                  'projects/demo-project/topics/')
  args, beam_args = launch.parse_args(stream_predict.build_parser(), [
      '--input_subscription', sub + 'reviews', '--model_dir',
      str(tiny_model_dir), '--feature_map', 'reviews=text',
      '--output_topic', topic + 'o', '--dead_letter_topic', topic + 'd',
      '--watch_models', 'models/*', '--model_events', 'out/events',
      '--labels_subscription', sub + 'labels', '--label_set',
      'negative, positive', '--min_labelled', '20'])
  options = flags.pipeline_options(beam_args, args, stream_predict.FLAGS)
  options.view_as(StandardOptions).streaming = True
  job = stream_predict.Job(args, options)
  assert job.gate.labels == LabelConfig(label_set=('negative', 'positive'))
  assert job.gate.rule.min_labelled == 20
  assert job.acks() is None, 'a label has no outcome to hold it for'
  p = beam.Pipeline(options=options)
  stream_predict.build(p, job)
  names = {t.unique_name for t in
           p.to_runner_api().components.transforms.values()}
  assert {'ReadLabels', 'Parse labels', 'Predict/Join labels'} <= names, names
