"""Streaming moderation end to end through Google's Pub/Sub emulator.

The real pipeline (DirectRunner, --streaming) reads a subscription and
publishes decisions and dead letters to topics; the test publishes comments,
pulls every decision and dead letter back (bounded waits), then cancels.
"""
import json
import threading
import time

from google.cloud import pubsub_v1

from pipelines import moderate
from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import
from harness.pubsub import pull_until

PROJECT = 'moderation-test'
WAIT_S = 180


def test_streaming_pipeline_decides_every_published_comment(pubsub_emulator):
  publisher = pubsub_v1.PublisherClient()
  subscriber = pubsub_v1.SubscriberClient()
  names = {}
  for name in ('comments', 'decisions', 'dead-letters'):
    topic = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=topic)
    sub = subscriber.subscription_path(PROJECT, name + '-sub')
    subscriber.create_subscription(name=sub, topic=topic)
    names[name] = (topic, sub)

  result = moderate.run([
      '--input_subscription', names['comments'][1],
      '--output_topic', names['decisions'][0],
      '--dead_letter_topic', names['dead-letters'][0],
      '--allowed_lateness', '2',
  ], wait=False)
  try:
    # Event times at "now": the DirectRunner's Pub/Sub watermark is the wall
    # clock, so each decision comes ~allowed_lateness after its event time.
    now = time.time()
    forms = ['Obama', 'President Obama', 'Barack Obama', 'Barack H. Obama']
    comments = []
    for i in range(40):
      comments.append({
          'comment_id': f'c{i:03d}', 'commenter_id': f'user{i % 4}',
          'text': f'What did {forms[i // 4 % 4]} say about the economy?',
          'timestamp': now + i * 0.01})
    futures = [publisher.publish(names['comments'][0], json.dumps(c).encode())
               for c in comments]
    futures.append(publisher.publish(names['comments'][0], b'not json'))
    # A message without "timestamp" takes its publish time.
    untimed = {'comment_id': 'u-1', 'commenter_id': 'user9',
               'text': 'Merkel spoke today.'}
    futures.append(publisher.publish(names['comments'][0],
                                     json.dumps(untimed).encode()))
    for f in futures:
      f.result(timeout=30)

    deadline = time.monotonic() + WAIT_S
    decisions = pull_until(subscriber, names['decisions'][1],
                            len(comments) + 1, deadline)
    # c000 again, from another commenter, once user0's c000 is decided: it
    # belongs to user0, so it is a duplicate, not a second decision.
    intruder = dict(comments[0], commenter_id='intruder',
                    timestamp=time.time())
    publisher.publish(names['comments'][0],
                      json.dumps(intruder).encode()).result(timeout=30)
    dead = pull_until(subscriber, names['dead-letters'][1], 2, deadline)
    decisions += pull_until(subscriber, names['decisions'][1], 1,
                            time.monotonic() + 5)
  finally:
    # cancel() can block while a Pub/Sub pull is in flight: bound it.
    canceller = threading.Thread(target=result.cancel, daemon=True)
    canceller.start()
    canceller.join(timeout=60)

  by_id = {d['comment_id']: d for d in decisions}
  assert len(decisions) == len(by_id) == len(comments) + 1  # no loss, no dup
  by_reason = {d['reason']: d for d in dead}
  assert sorted(by_reason) == ['duplicate', 'unparseable_json']
  assert by_reason['unparseable_json']['raw'] == 'not json'
  assert by_reason['duplicate']['key'] == 'c000'
  assert json.loads(by_reason['duplicate']['raw']) == intruder
  # Every form links to Barack Obama: per commenter the first comment is
  # allowed, the next nine (within a second) are rejected.
  for i, c in enumerate(comments):
    d = by_id[c['comment_id']]
    assert d['decision'] == ('allow' if i < 4 else 'reject'), d
    assert [e['canonical_id'] for e in d['entities']] == [
        'https://en.wikipedia.org/wiki/Barack_Obama']
  assert by_id['u-1']['decision'] == 'allow'
