"""python -m pipelines.evaluate streaming, against the Pub/Sub emulator:
predictions and labels published as they happen; each window's metrics
come out on the metrics topic, drift and alerts on theirs, a bad row on
the dead-letter topic, and every prediction is counted, labelled or not."""
import datetime
import json
import threading
import time

import pytest
from google.cloud import pubsub_v1

from common import feature_stats
from common.records.prediction_log import log_row
from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import
from pipelines import evaluate
from pipelines import launch
from tests import test_evaluation_drift as drift_data

PROJECT = 'evaluate-stream'
WAIT_S = 180


def _pull(subscriber, subscription, deadline, enough):
  got = []
  while time.monotonic() < deadline and not enough(got):
    response = subscriber.pull(subscription=subscription, max_messages=100,
                               timeout=5)
    if response.received_messages:
      subscriber.acknowledge(subscription=subscription, ack_ids=[
          m.ack_id for m in response.received_messages])
      got += [json.loads(m.message.data) for m in response.received_messages]
    else:
      time.sleep(0.5)
  return got


def _final(records):
  final = {}
  for r in records:
    key = (r['model_version'], r['slice'])
    if key not in final or (r['count'], r['labelled']) > (
        final[key]['count'], final[key]['labelled']):
      final[key] = r
  return final


def test_streaming_windows_count_every_prediction(pubsub_emulator, tmp_path):
  publisher = pubsub_v1.PublisherClient()
  subscriber = pubsub_v1.SubscriberClient()
  names = {}
  for name in ('log', 'labels', 'metrics', 'drift', 'alerts', 'dead'):
    topic = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=topic)
    sub = subscriber.subscription_path(PROJECT, f'{name}-sub')
    subscriber.create_subscription(name=sub, topic=topic)
    names[name] = (topic, sub)
  baseline = tmp_path / 'baseline_stats.json'
  baseline.write_text(feature_stats.dumps(
      drift_data._baseline(drift_data._log(7, 300))))

  result = evaluate.run([
      '--predictions_subscription', names['log'][1],
      '--ground_truth_subscription', names['labels'][1],
      '--metrics_topic', names['metrics'][0],
      '--drift_topic', names['drift'][0],
      '--alert_topic', names['alerts'][0],
      '--dead_letter_topic', names['dead'][0],
      '--prediction_field', 'positive_review_probability',
      '--baseline', str(baseline), '--drift', 'psi>100',
      '--alert', 'count<1000',
      '--window', '5s', '--label_lateness', '3s'], wait=False)
  n = 40
  try:
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for i in range(n):
      when = now + datetime.timedelta(seconds=i * 0.05)
      rows.append(log_row('sentiment', '1', f'k{i}',
                          {'reviews': f'a good film number {i}'},
                          {'positive_review_probability': 0.9 if i % 2
                           else 0.2}, when))
    futures = [publisher.publish(names['log'][0], json.dumps(r).encode())
               for r in rows]
    futures.append(publisher.publish(names['log'][0], b'not json'))
    for i in range(0, n, 2):  # half the keys labelled, a second later
      label = {'key': f'k{i}', 'groundtruth': 'negative',
               'labeled_at': (now + datetime.timedelta(seconds=1)
                              ).isoformat()}
      futures.append(publisher.publish(names['labels'][0],
                                       json.dumps(label).encode()))
    for f in futures:
      f.result(timeout=30)

    deadline = time.monotonic() + WAIT_S
    metrics = _pull(subscriber, names['metrics'][1], deadline, lambda got: (
        sum(r['count'] for r in _final(got).values()) >= n
        and sum(r['labelled'] for r in _final(got).values()) >= n // 2))
    dead = _pull(subscriber, names['dead'][1], deadline, lambda got: got)
    drift = _pull(subscriber, names['drift'][1], deadline, lambda got: got)
    alerts = _pull(subscriber, names['alerts'][1], deadline, lambda got: got)
  finally:
    canceller = threading.Thread(target=result.cancel, daemon=True)
    canceller.start()
    canceller.join(timeout=60)

  final = _final(metrics)
  assert sum(r['count'] for r in final.values()) == n
  assert sum(r['labelled'] for r in final.values()) == n // 2
  assert all(r['slice'].startswith('window=') and r['window_end']
             for r in final.values())
  # The labelled half: all predicted 0.2 -> negative, all right.
  assert all(r['accuracy'] == 1.0 for r in final.values() if r['labelled'])
  assert [d['reason'] for d in dead] == ['unparseable_row']
  assert drift and {d['feature'] for d in drift} >= {
      'reviews_chars', 'positive_review_probability'}
  assert alerts and {a['rule'] for a in alerts} == {'count<1000'}


SUB = 'projects/p/subscriptions/s'


@pytest.mark.parametrize('argv,flag', [
    (['--predictions_subscription', SUB], '--ground_truth_subscription'),
    (['--predictions_subscription', 'log', '--ground_truth_subscription',
      SUB], '--predictions_subscription'),
    (['--predictions_subscription', SUB, '--ground_truth_subscription', SUB],
     '--metrics_topic'),
    (['--predictions_subscription', SUB, '--ground_truth_subscription', SUB,
      '--metrics_topic', 'metrics'], '--metrics_topic'),
    (['--predictions_subscription', SUB, '--ground_truth_subscription', SUB,
      '--metrics_topic', 'projects/p/topics/m', '--label_lateness', 'soon'],
     '--label_lateness'),
    (['--predictions_subscription', SUB, '--ground_truth_subscription', SUB,
      '--metrics_topic', 'projects/p/topics/m', '--predictions', 'x.jsonl'],
     '--predictions'),
])
def test_bad_streaming_flags_are_usage_errors(argv, flag):
  with pytest.raises(launch.UsageError) as error:
    evaluate.run(argv)
  assert error.value.flag == flag
