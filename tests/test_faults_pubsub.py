"""Pub/Sub failing under a running streaming job (moderate; stream_predict
adds a STREAMING_JOBS entry): the emulator stopped and started again, the
job killed and started again on the same subscription.

Locally a message is acknowledged once its outcome is published
(pipelines/local_acks.py), so nothing is lost; redeliveries are found by
comment_id (the rule's state), so nothing is decided twice while the job
runs. A killed job forgets its state: what it had published but not yet
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
from pipelines import local_acks
from pipelines import moderate
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


def _all_out(comments, names):
  ids = {c['comment_id'] for c in comments}

  def done(received):
    seen = {d['comment_id'] for d in received[names['decisions'][1]]}
    seen |= {d['key'] for d in received[names['dead'][1]]}
    return ids <= seen
  return done


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
    before = _comments(0, 30)
    stream_faults.publish(names['comments'][0], _payloads(before))
    comments += before
    collector.until(lambda r: len(r[names['decisions'][1]]) >= 10, WAIT_S)
    during = _comments(30, 30)  # read, then held for the allowed lateness
    stream_faults.publish(names['comments'][0], _payloads(during))
    comments += during
    time.sleep(0.5)
    emulator.pause()
    time.sleep(outage_s)
    emulator.resume()
    after = _comments(60, 20)
    stream_faults.publish(names['comments'][0], _payloads(after))
    comments += after
    assert collector.until(_all_out(comments, names), WAIT_S, quiet_s=3)
  finally:
    canceller = threading.Thread(target=result.cancel, daemon=True)
    canceller.start()
    canceller.join(timeout=60)
  figures = _tally(comments, collector, names, _replay(tmp_path, comments))
  record(f'Pub/Sub emulator stopped {outage_s} s under moderate', figures)
  assert figures.lost == 0 and figures.decided_twice == 0
  assert figures.outputs == len(comments) and figures.differing == 0
  assert set(figures.dead_by_reason) <= {'duplicate'}


def _job(names, log):
  """moderate in a process of its own (to be killed). Its allowed lateness
  covers the restart: the local watermark is the wall clock, so comments
  redelivered to the new job would otherwise be `late`."""
  return subprocess.Popen(
      [sys.executable, '-m', 'pipelines.moderate',
       *_flags(names, RESTART_LATENESS_S)],
      cwd=standins.REPO, stdout=log, stderr=subprocess.STDOUT,
      env={**os.environ, 'PYTHONPATH': str(standins.REPO)},
      start_new_session=True)


@pytest.mark.faults
@pytest.mark.parametrize('run', range(3))
def test_moderate_killed_and_started_again_loses_nothing(emulator, tmp_path,
                                                         run):
  names = stream_faults.make_topics(f'restart{run}', ['comments', 'decisions',
                                                      'dead'])
  collector = stream_faults.Collector([names['decisions'][1],
                                       names['dead'][1]])
  comments = []
  with open(tmp_path / 'job.log', 'ab') as log:
    job = _job(names, log)
    try:
      first = _comments(0, 40)
      stream_faults.publish(names['comments'][0], _payloads(first))
      comments += first
      collector.until(lambda r: len(r[names['decisions'][1]]) >= 10 + run * 5,
                      WAIT_S)
      second = _comments(40, 40)  # read and held when the job dies
      stream_faults.publish(names['comments'][0], _payloads(second))
      comments += second
      time.sleep(0.3 * run)
      os.killpg(job.pid, signal.SIGKILL)
      job.wait(30)
      job = _job(names, log)
      third = _comments(80, 20)
      stream_faults.publish(names['comments'][0], _payloads(third))
      comments += third
      assert collector.until(_all_out(comments, names), WAIT_S * 2,
                             quiet_s=5)
    finally:
      if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
  figures = _tally(comments, collector, names, _replay(tmp_path, comments))
  record('moderate killed (SIGKILL) and started again', figures)
  assert figures.lost == 0
