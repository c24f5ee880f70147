"""Alerts to a Pub/Sub topic (--alert_topic), against the local emulator: a
retraining launch subscribed to the topic gets every alert record of the
run as JSON, drift alerts and gate decisions included."""
import json
import time

from google.cloud import pubsub_v1

from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import
from pipelines import evaluate
from tests.test_evaluate_drift_report import world  # noqa: F401  pylint: disable=unused-import

PROJECT = 'evaluate-alerts'


def _pull_all(subscriber, subscription, count, deadline_s=60):
  messages = []
  deadline = time.monotonic() + deadline_s
  while len(messages) < count and time.monotonic() < deadline:
    response = subscriber.pull(subscription=subscription, max_messages=100,
                               timeout=10)
    if response.received_messages:
      subscriber.acknowledge(subscription=subscription, ack_ids=[
          m.ack_id for m in response.received_messages])
      messages += [json.loads(m.message.data)
                   for m in response.received_messages]
  return messages


def test_every_alert_record_is_published_as_json(pubsub_emulator, world):
  publisher = pubsub_v1.PublisherClient()
  subscriber = pubsub_v1.SubscriberClient()
  topic = publisher.topic_path(PROJECT, 'alerts')
  publisher.create_topic(name=topic)
  subscription = subscriber.subscription_path(PROJECT, 'retrain')
  subscriber.create_subscription(name=subscription, topic=topic)

  assert evaluate.run(world['argv'] + [
      '--baseline', world['baseline'], '--drift', 'psi>0.2',
      '--alert', 'macro_f1<0.99', '--alert_topic', topic]) == 0
  with open(world['output'] / 'alerts.jsonl') as f:
    written = [json.loads(line) for line in f]
  assert {a['kind'] for a in written} == {'drift', 'threshold'}
  published = _pull_all(subscriber, subscription, len(written))
  key = lambda a: json.dumps(a, sort_keys=True)
  assert sorted(map(key, published)) == sorted(map(key, written))
  # Nothing more than the run's alerts.
  assert not _pull_all(subscriber, subscription, 1, deadline_s=3)
