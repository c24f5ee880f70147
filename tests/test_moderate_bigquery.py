"""Streaming moderation writes its decisions to a BigQuery table as well:
Pub/Sub emulator in, BigQuery stand-in (streaming inserts) and Pub/Sub out."""
import json
import threading
import time

from google.cloud import pubsub_v1

from pipelines import moderate
from harness.bigquery import bigquery_emulator  # noqa: F401
from harness.gcs import gcs_emulator  # noqa: F401
from harness.pubsub import pubsub_emulator  # noqa: F401

PROJECT = 'moderation-bq-test'
WAIT_S = 180


def _topic_and_subscription(publisher, subscriber, name):
  topic = publisher.topic_path(PROJECT, name)
  publisher.create_topic(name=topic)
  sub = subscriber.subscription_path(PROJECT, name + '-sub')
  subscriber.create_subscription(name=sub, topic=topic)
  return topic, sub


def test_streaming_decisions_reach_a_partitioned_table(
    pubsub_emulator, bigquery_emulator):
  bq = bigquery_emulator
  publisher = pubsub_v1.PublisherClient()
  subscriber = pubsub_v1.SubscriberClient()
  comments_topic, comments_sub = _topic_and_subscription(
      publisher, subscriber, 'comments')
  decisions_topic, _ = _topic_and_subscription(
      publisher, subscriber, 'decisions')
  dead_topic, _ = _topic_and_subscription(publisher, subscriber, 'dead')

  result = moderate.run([
      '--input_subscription', comments_sub, '--output_topic', decisions_topic,
      '--dead_letter_topic', dead_topic, '--allowed_lateness', '2',
      '--output_table', bq.table('decisions'),
      '--bq_insert_retries', '1'], wait=False)
  table = f'{bq.project}.{bq.dataset}.decisions'
  rows = []
  try:
    now = time.time()
    comments = [{'comment_id': f'c{i:02d}', 'commenter_id': f'user{i % 2}',
                 'text': 'Has President Obama been to Paris?',
                 'timestamp': now + i * 0.01} for i in range(6)]
    for c in comments:
      publisher.publish(comments_topic, json.dumps(c).encode()).result(30)
    deadline = time.monotonic() + WAIT_S
    while len(rows) < len(comments) and time.monotonic() < deadline:
      time.sleep(1)
      try:
        rows = [dict(r) for r in bq.client().list_rows(table)]
      except Exception:  # pylint: disable=broad-except  # not created yet
        rows = []
  finally:
    canceller = threading.Thread(target=result.cancel, daemon=True)
    canceller.start()
    canceller.join(timeout=60)

  assert bq.client().get_table(table).time_partitioning.field == 'timestamp'
  by_id = {r['comment_id']: r for r in rows}
  assert len(rows) == len(by_id) == len(comments)
  # Per commenter the first mention of Obama is allowed, the rest rejected.
  assert [by_id[c['comment_id']]['decision'] for c in comments] == [
      'allow', 'allow', 'reject', 'reject', 'reject', 'reject']
  first = by_id['c00']
  assert first['timestamp'].tzinfo is not None
  assert 'https://en.wikipedia.org/wiki/Barack_Obama' in [
      e['canonical_id'] for e in first['entities']]
  assert by_id['c02']['blocked_by'] == [
      'https://en.wikipedia.org/wiki/Barack_Obama']
