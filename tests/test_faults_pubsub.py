"""Pub/Sub failing under a running streaming job (moderate, stream_predict):
the emulator stopped and started again, the job killed and started again on
the same subscription.

Locally a message is acknowledged once its outcome is published
(pipelines/local_acks.py), so nothing is lost; redeliveries are found by
comment_id (moderate's rule state) or by key (stream_predict's dedup
window), so nothing is decided or predicted twice while the job runs. A
killed job forgets its state: what it had published but not yet
acknowledged comes again and is decided again (counted, docs/reliability.md).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness import pubsub as pubsub_harness
from harness import standins
from harness import stream_faults
from harness.fault_figures import record
from models.runtime import predictor
from pipelines import local_acks
from pipelines import moderate
from pipelines import stream_predict
from transforms.moderation import outcomes

FORMS = ['Obama', 'President Obama', 'Barack Obama', 'Merkel', 'the weather']
LATENESS_S = 2
RESTART_LATENESS_S = 60
WAIT_S = 120


@pytest.fixture(scope='module')
def emulator(tmp_path_factory):
  """An emulator of this module's own: the tests stop it."""
  jar, java = pubsub_harness.emulator_jar(), shutil.which('java')
  if not jar or not java:
    pytest.skip('Pub/Sub emulator (gcloud SDK jar + java) not installed')
  with pubsub_harness.emulator(jar, java,
                               tmp_path_factory.mktemp('pubsub')) as running:
    yield running


def _comments(first, count):
  now = time.time()
  return [{'comment_id': f'c{i:03d}', 'commenter_id': f'user{i % 4}',
           'text': f'What did {FORMS[i % len(FORMS)]} say?',
           'timestamp': now + (i - first) * 0.001}
          for i in range(first, first + count)]


def _payloads(comments):
  return [json.dumps(c).encode() for c in comments]


def _replay(tmp_path, comments):
  """The batch replay's decisions of the same comments."""
  path = tmp_path / 'replay.jsonl'
  path.write_text(''.join(json.dumps(c) + '\n' for c in comments))
  moderate.run(['--input', str(path), '--output', str(tmp_path / 'replay')])
  decided = {}
  for out in tmp_path.glob('replay-decisions-*.jsonl'):
    for line in out.read_text().splitlines():
      d = json.loads(line)
      decided[d['comment_id']] = (d['decision'], tuple(d['blocked_by']))
  return decided


def _tally(comments, collector, names, replay):
  return stream_faults.tally(
      [c['comment_id'] for c in comments],
      collector.received[names['decisions'][1]],
      collector.received[names['dead'][1]],
      lambda d: d['comment_id'],
      lambda d: (d['decision'], tuple(d['blocked_by'])), replay)


def _flags(names, lateness_s=LATENESS_S):
  return ['--input_subscription', names['comments'][1],
          '--output_topic', names['decisions'][0],
          '--dead_letter_topic', names['dead'][0],
          '--allowed_lateness', str(lateness_s)]


def _send(topic, messages, sent):
  """Publishes `messages` (dicts, as JSON) and adds them to `sent`."""
  stream_faults.publish(topic, _payloads(messages))
  sent += messages


def _all_out(ids, outputs, dead, output_id):
  """Whether every id has an output on subscription `outputs` or a dead
  letter on `dead`."""
  ids = set(ids)

  def done(received):
    seen = {output_id(d) for d in received[outputs]}
    seen |= {d['key'] for d in received[dead]}
    return ids <= seen
  return done


def _all_decided(comments, names):
  return _all_out([c['comment_id'] for c in comments], names['decisions'][1],
                  names['dead'][1], lambda d: d['comment_id'])


def _cancel(result):
  # cancel() can block while a Pub/Sub pull is in flight: bound it.
  canceller = threading.Thread(target=result.cancel, daemon=True)
  canceller.start()
  canceller.join(timeout=60)


def test_outcomes_acknowledge_their_messages_and_nothing_else(emulator):
  """The ledger against the emulator: what has an outcome is acknowledged,
  what has none comes again once its lease ends."""
  from google.cloud import pubsub_v1
  names = stream_faults.make_topics('ledger', ['comments'])
  topic, sub = names['comments']
  comments = _comments(0, 3)
  stream_faults.publish(topic, _payloads(comments) + [b'not json'])
  subscriber = pubsub_v1.SubscriberClient()
  pulled = subscriber.pull(subscription=sub, max_messages=10,
                           timeout=10).received_messages
  assert len(pulled) == 4
  ledger = local_acks.AckLedger(local_acks.AckOnOutcome(
      outcomes.message_keys, outcomes.outcome_key))
  ledger.hold(subscriber, sub, pulled)
  ledger.settle([json.dumps({'comment_id': 'c000', 'decision': 'allow'}),
                 json.dumps({'key': None, 'reason': 'unparseable_json',
                             'raw': 'not json'}).encode()])
  assert ledger.acknowledged == 2 and ledger.held == 2
  # The job dies: its leases end (here at once), the rest comes again.
  subscriber.modify_ack_deadline(
      subscription=sub, ack_ids=[m.ack_id for m in pulled],
      ack_deadline_seconds=0)
  again = subscriber.pull(subscription=sub, max_messages=10,
                          timeout=10).received_messages
  assert sorted(json.loads(m.message.data)['comment_id'] for m in again) == [
      'c001', 'c002']


@pytest.mark.parametrize('outage_s', [
    12,  # over the subscription's 10 s ack deadline, inside the job's lease
    pytest.param(45, marks=pytest.mark.faults),  # past the 20 s lease too
])
def test_the_emulator_stopped_under_moderate_loses_and_doubles_nothing(
    emulator, tmp_path, outage_s):
  names = stream_faults.make_topics(f'outage{outage_s}', [
      'comments', 'decisions', 'dead'])
  collector = stream_faults.Collector([names['decisions'][1],
                                       names['dead'][1]])
  result = moderate.run(_flags(names), wait=False)
  comments = []
  try:
    _send(names['comments'][0], _comments(0, 30), comments)
    collector.until(lambda r: len(r[names['decisions'][1]]) >= 10, WAIT_S)
    # read, then held for the allowed lateness
    _send(names['comments'][0], _comments(30, 30), comments)
    time.sleep(0.5)
    emulator.pause()
    time.sleep(outage_s)
    emulator.resume()
    _send(names['comments'][0], _comments(60, 20), comments)
    assert collector.until(_all_decided(comments, names), WAIT_S, quiet_s=3)
  finally:
    _cancel(result)
  figures = _tally(comments, collector, names, _replay(tmp_path, comments))
  record(f'Pub/Sub emulator stopped {outage_s} s under moderate', figures)
  assert figures.lost == 0 and figures.decided_twice == 0
  assert figures.outputs == len(comments) and figures.differing == 0
  assert set(figures.dead_by_reason) <= {'duplicate'}


def _job(module, flags, log):
  """A streaming job in a process of its own (to be killed)."""
  return subprocess.Popen(
      [sys.executable, '-m', module, *flags],
      cwd=standins.REPO, stdout=log, stderr=subprocess.STDOUT,
      env={**os.environ, 'PYTHONPATH': str(standins.REPO)},
      start_new_session=True)


def _kill(job):
  os.killpg(job.pid, signal.SIGKILL)
  job.wait(30)


def _killed_and_restarted(start, topic, make, collector, outputs, all_out,
                          tmp_path, run):
  """A job (`start(log)` -> its process) SIGKILLed and started again on the
  same subscription: 40 messages (`make(first, count)`) published, 40 more
  (read, and held or answered, when it dies) and the kill 0.3 * run s later,
  20 more to the new job. Returns the 100 once `all_out(them)` holds on
  `collector` (`outputs`: the subscription of the job's outputs)."""
  messages = []
  with open(tmp_path / 'job.log', 'ab') as log:
    job = start(log)
    try:
      _send(topic, make(0, 40), messages)
      collector.until(lambda r: len(r[outputs]) >= 10 + run * 5, WAIT_S)
      _send(topic, make(40, 40), messages)
      time.sleep(0.3 * run)
      _kill(job)
      job = start(log)
      _send(topic, make(80, 20), messages)
      assert collector.until(all_out(messages), WAIT_S * 2, quiet_s=5)
    finally:
      if job.poll() is None:
        _kill(job)
  return messages


def _moderate_job(names, log):
  """moderate's allowed lateness covers the restart: the local watermark is
  the wall clock, so comments redelivered to the new job would otherwise be
  `late`."""
  return _job('pipelines.moderate', _flags(names, RESTART_LATENESS_S), log)


@pytest.mark.faults
@pytest.mark.parametrize('run', range(3))
def test_moderate_killed_and_started_again_loses_nothing(emulator, tmp_path,
                                                         run):
  names = stream_faults.make_topics(f'restart{run}', ['comments', 'decisions',
                                                      'dead'])
  collector = stream_faults.Collector([names['decisions'][1],
                                       names['dead'][1]])
  comments = _killed_and_restarted(
      lambda log: _moderate_job(names, log), names['comments'][0], _comments,
      collector, names['decisions'][1],
      lambda comments: _all_decided(comments, names), tmp_path, run)
  figures = _tally(comments, collector, names, _replay(tmp_path, comments))
  record('moderate killed (SIGKILL) and started again', figures)
  assert figures.lost == 0


# stream_predict: the same faults; its outcomes are predictions keyed by the
# client key, its redeliveries `duplicate_key` dead letters (--dedup_window,
# 600 s of event time by default, covers them).
TEXTS = ['great film', 'awful acting', 'loved it', 'a dull mess',
         'wonderful story and superb cast', 'boring']


def _requests(first, count):
  return [{'key': f'r{i:03d}', 'text': f'{TEXTS[i % len(TEXTS)]} {i}'}
          for i in range(first, first + count)]


def _predict_topics(prefix):
  return stream_faults.make_topics(prefix, ['requests', 'predictions', 'dead'])


def _predict_flags(names, model_dir):
  return ['--input_subscription', names['requests'][1],
          '--output_topic', names['predictions'][0],
          '--dead_letter_topic', names['dead'][0],
          '--model_dir', str(model_dir), '--feature_map', 'reviews=text',
          '--batch_size', '8', '--max_batch_wait_ms', '100']


def _probability(prediction):
  return round(prediction['positive_review_probability'], 5)


def _predict_tally(requests, collector, names, model_dir):
  """The run against the model's own predictions of the same texts."""
  replay = dict(zip([r['key'] for r in requests], map(
      _probability, predictor.load(str(model_dir)).predict(
          [r['text'] for r in requests]))))
  return stream_faults.tally(
      [r['key'] for r in requests],
      collector.received[names['predictions'][1]],
      collector.received[names['dead'][1]],
      lambda p: p['key'], lambda p: _probability(p['predictions']), replay)


def _all_predicted(requests, names):
  return _all_out([r['key'] for r in requests], names['predictions'][1],
                  names['dead'][1], lambda p: p['key'])


def _predict_collector(names):
  return stream_faults.Collector([names['predictions'][1], names['dead'][1]])


@pytest.mark.parametrize('outage_s', [
    12,  # over the subscription's 10 s ack deadline, inside the job's lease
    pytest.param(45, marks=pytest.mark.faults),  # past the 20 s lease too
])
def test_the_emulator_stopped_under_stream_predict_predicts_every_key_once(
    emulator, tiny_model_dir, outage_s):
  names = _predict_topics(f'predict-outage{outage_s}')
  collector = _predict_collector(names)
  result = stream_predict.run(_predict_flags(names, tiny_model_dir),
                              wait=False)
  requests = []
  try:
    _send(names['requests'][0], _requests(0, 30), requests)
    collector.until(lambda r: len(r[names['predictions'][1]]) >= 10, WAIT_S)
    # A trickle that the outage interrupts, so that it strikes mid-stream:
    # stream_predict answers a burst within a second, before the outage.
    during = _requests(30, 30)
    requests += during
    trickle = threading.Thread(target=stream_faults.publish, args=(
        names['requests'][0], _payloads(during), 0.05), daemon=True)
    trickle.start()
    time.sleep(0.75)
    emulator.pause()
    time.sleep(outage_s)
    emulator.resume()
    trickle.join(timeout=WAIT_S)
    _send(names['requests'][0], _requests(60, 20), requests)
    assert collector.until(_all_predicted(requests, names), WAIT_S,
                           quiet_s=3)
  finally:
    _cancel(result)
  figures = _predict_tally(requests, collector, names, tiny_model_dir)
  record(f'Pub/Sub emulator stopped {outage_s} s under stream_predict',
         figures)
  assert figures.lost == 0 and figures.decided_twice == 0
  assert figures.outputs == len(requests) and figures.differing == 0
  # Every redelivered copy is a duplicate_key dead letter: messages
  # delivered = predictions + dead letters.
  dead = collector.received[names['dead'][1]]
  assert {d['reason'] for d in dead} <= {'duplicate_key'}
  assert len(dead) == figures.duplicates
  assert len(collector.received[names['predictions'][1]]) == len(requests)


@pytest.mark.faults
@pytest.mark.parametrize('run', range(3))
def test_stream_predict_killed_and_started_again_loses_nothing(
    emulator, tiny_model_dir, tmp_path, run):
  names = _predict_topics(f'predict-restart{run}')
  collector = _predict_collector(names)
  flags = _predict_flags(names, tiny_model_dir)
  requests = _killed_and_restarted(
      lambda log: _job('pipelines.stream_predict', flags, log),
      names['requests'][0], _requests, collector, names['predictions'][1],
      lambda requests: _all_predicted(requests, names), tmp_path, run)
  figures = _predict_tally(requests, collector, names, tiny_model_dir)
  record('stream_predict killed (SIGKILL) and started again', figures)
  assert figures.lost == 0 and figures.differing == 0
  assert figures.outputs == len(requests)
  # The dedup state died with the process: a copy redelivered to the new
  # job is predicted again (counted in decided_twice), not dead-lettered.
  assert set(figures.dead_by_reason) <= {'duplicate_key'}
