"""stream_predict end to end through Google's Pub/Sub emulator.

The real job (DirectRunner, streaming) reads a subscription and publishes
predictions, dead letters and model events to topics; the tests publish
messages (good, bad, repeated), pull every outcome back (bounded waits),
then cancel the job. Messages in = predictions + dead letters, every key
once; and through a model refresh mid-stream, every key is predicted by
exactly one live version; labels on their own subscription reach the gate.
"""
import json
import shutil
import threading
import time

from apache_beam.metrics.metric import MetricsFilter

from pipelines import stream_predict
from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import
from harness.pubsub import Topics

WAIT_S = 180


def _await_counter(result, name, least, deadline):
  """Waits until the running job's counter `name` reaches `least` (the
  DirectRunner's metrics are committed bundle by bundle while it runs)."""
  while time.monotonic() < deadline:
    counters = result.metrics().query(
        MetricsFilter().with_name(name))['counters']
    if sum(c.committed or 0 for c in counters) >= least:
      return
    time.sleep(0.5)


def _cancel(result):
  # cancel() can block while a Pub/Sub pull is in flight: bound it.
  canceller = threading.Thread(target=result.cancel, daemon=True)
  canceller.start()
  canceller.join(timeout=60)


def _message(key, text):
  return json.dumps({'key': key, 'text': text}).encode()


def test_every_message_is_one_prediction_or_one_dead_letter(pubsub_emulator,
                                                            tiny_model_dir):
  t = Topics('requests', 'predictions', 'dead-letters')
  result = stream_predict.run([
      '--input_subscription', t.sub['requests'],
      '--output_topic', t.topic['predictions'],
      '--dead_letter_topic', t.topic['dead-letters'],
      '--model_dir', str(tiny_model_dir), '--feature_map', 'reviews=text',
      '--batch_size', '16', '--max_batch_wait_ms', '200',
  ], wait=False)
  try:
    good = [_message(f'k{i:03d}', f'great film number {i}')
            for i in range(40)]
    bad = [b'not json', b'\xff\xfe not utf-8',
           json.dumps({'text': 'no key'}).encode(),
           json.dumps({'key': 'typed', 'text': 7}).encode()]
    repeat = [_message('k000', 'great film number 0')]  # within the window
    t.publish('requests', good[:20] + bad + good[20:] + repeat)
    deadline = time.monotonic() + WAIT_S
    predictions = t.pull('predictions', len(good), deadline)
    dead = t.pull('dead-letters', len(bad) + 1, deadline)
  finally:
    _cancel(result)

  keys = [p['key'] for p in predictions]
  assert sorted(keys) == sorted(f'k{i:03d}' for i in range(40))  # each once
  assert {p['model_version'] for p in predictions} == {'tiny/1'}
  assert all(0 <= p['predictions']['positive_review_probability'] <= 1
             for p in predictions)
  assert sorted(d['reason'] for d in dead) == sorted(
      ['unparseable', 'invalid_text', 'missing_key', 'wrong_type',
       'duplicate_key'])
  # inputs = predictions + dead letters
  assert len(good) + len(bad) + len(repeat) == len(predictions) + len(dead)
  assert [d['raw'] for d in dead if d['reason'] == 'unparseable'] == [
      'not json']
  # The bytes that are not UTF-8, kept.
  assert [(d['raw'], d.get('raw_encoding')) for d in dead
          if d['reason'] == 'invalid_text'] == [('//4gbm90IHV0Zi04', 'base64')]


def _copy_version(source, versions, name):
  """Publishes a version folder as a model store should: copied under a
  temporary name, then moved into place."""
  staging = versions / f'.{name}.partial'
  shutil.copytree(source, staging)
  staging.rename(versions / name)


def test_a_new_version_is_shadowed_then_promoted_mid_stream(
    pubsub_emulator, tiny_model_dir, tmp_path):
  versions = tmp_path / 'tiny'
  versions.mkdir()
  _copy_version(tiny_model_dir, versions, '1')
  t = Topics('requests', 'predictions', 'dead-letters', 'events')
  result = stream_predict.run([
      '--input_subscription', t.sub['requests'],
      '--output_topic', t.topic['predictions'],
      '--dead_letter_topic', t.topic['dead-letters'],
      '--model_dir', str(versions / '1'), '--feature_map', 'reviews=text',
      '--watch_models', str(versions / '*'), '--watch_interval', '0',
      '--model_events_topic', t.topic['events'],
      '--shadow_min_examples', '20', '--max_latency_ratio', '1000',
      '--batch_size', '10', '--max_batch_wait_ms', '100',
  ], wait=False)
  try:
    deadline = time.monotonic() + WAIT_S
    t.publish('requests', [_message(f'a{i:03d}', f'great film {i}')
                           for i in range(30)])
    before = t.pull('predictions', 30, deadline)
    _copy_version(tiny_model_dir, versions, '2')
    # Shadow for 20 messages, promoted, then the rest by version 2.
    t.publish('requests', [_message(f'b{i:03d}', f'boring film {i}')
                           for i in range(60)])
    after = t.pull('predictions', 60, deadline)
    events = t.pull('events', 2, deadline)
    dead = t.pull('dead-letters', 1, time.monotonic() + 3)
  finally:
    _cancel(result)

  predictions = before + after
  keys = [p['key'] for p in predictions]
  assert len(keys) == len(set(keys)) == 90 and not dead  # each key once
  assert {p['model_version'] for p in before} == {'tiny/1'}
  by_version = {}
  for p in after:
    by_version.setdefault(p['model_version'], []).append(p['key'])
  assert set(by_version) == {'tiny/1', 'tiny/2'}
  assert len(by_version['tiny/1']) >= 20  # the shadow's examples
  assert [(e['version'], e['event']) for e in events] == [
      ('tiny/2', 'shadow'), ('tiny/2', 'promoted')]
  promoted = events[1]
  assert promoted['examples'] >= 20 and promoted['agreement'] == 1.0
  assert promoted['live_version'] == 'tiny/1'


def test_labels_of_shadowed_keys_decide_the_gate_on_accuracy(
    pubsub_emulator, tiny_model_dir, tmp_path):
  """Labels published (to their own subscription) for keys the shadow
  predicted reach the gate before it decides: the event counts them and
  both versions' accuracy (the same model: equal), and the decision is
  taken on accuracy."""
  versions = tmp_path / 'tiny'
  versions.mkdir()
  _copy_version(tiny_model_dir, versions, '1')
  t = Topics('requests', 'labels', 'predictions', 'dead-letters', 'events')
  output = 'positive_review_probability'
  result = stream_predict.run([
      '--input_subscription', t.sub['requests'],
      '--labels_subscription', t.sub['labels'],
      '--output_topic', t.topic['predictions'],
      '--dead_letter_topic', t.topic['dead-letters'],
      '--model_dir', str(versions / '1'), '--feature_map', 'reviews=text',
      '--watch_models', str(versions / '*'), '--watch_interval', '0',
      '--model_events_topic', t.topic['events'],
      '--shadow_min_examples', '40', '--min_labelled', '10',
      '--decision_output', output, '--max_latency_ratio', '1000',
      '--batch_size', '10', '--max_batch_wait_ms', '100',
  ], wait=False)
  try:
    deadline = time.monotonic() + WAIT_S
    t.publish('requests', [_message(f'a{i:03d}', f'great film {i}')
                           for i in range(10)])
    before = t.pull('predictions', 10, deadline)
    _copy_version(tiny_model_dir, versions, '2')
    t.publish('requests', [_message(f'b{i:03d}', f'boring film {i}')
                           for i in range(30)])
    shadowed = t.pull('predictions', 30, deadline)
    shadow = t.pull('events', 1, deadline)
    # Labels: what the live version said (so both versions are right).
    t.publish('labels', [json.dumps({
        'key': p['key'],
        'groundtruth': p['predictions'][output] >= 0.5}).encode()
                         for p in shadowed])
    _await_counter(result, 'labels_joined', len(shadowed) - 10, deadline)
    t.publish('requests', [_message(f'c{i:03d}', f'fine film {i}')
                           for i in range(40)])
    after = t.pull('predictions', 40, deadline)
    decided = t.pull('events', 1, deadline)
  finally:
    _cancel(result)

  assert len({p['key'] for p in before + shadowed + after}) == 80
  assert [e['event'] for e in shadow + decided] == ['shadow', 'promoted']
  event = decided[0]
  # The shadow's first batch warms its graph: its keys are not counted.
  assert 10 <= event['labelled'] <= 30, event
  assert event['live_accuracy'] == event['shadow_accuracy'] == 1.0, event
  assert event['reason'].startswith('accuracy 1.0000'), event['reason']
