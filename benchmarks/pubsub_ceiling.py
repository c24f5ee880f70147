"""The ceiling of benchmarks.stream_predict's harness itself: its emulator
and feeder exactly as it runs them, with the job replaced by a plain loop
that pulls the requests (up to 1,000 a pull) and publishes a
prediction-shaped record for each in one request. Whatever rate and latency
this loop gets is the most the streaming benchmark can show for any job on
this machine.

  python -m benchmarks.pubsub_ceiling [--messages 10000] [--rates 1600,3200,6400]

One JSON line per rate (the feeder's figures, plus the loop's CPU seconds).
"""
import argparse
import json
import os
import sys
import threading
import time

from benchmarks import common
from benchmarks import pubsub_service
from benchmarks.stream_predict import PROJECT
from benchmarks.stream_predict import TOPICS


def _echo(subscriber, subscription, publisher, topic, stop):
  """Pull, publish one record per request, acknowledge; until `stop`."""
  from google.api_core import exceptions
  from google.pubsub_v1 import PubsubMessage
  from google.pubsub_v1.services.publisher.client import PublisherClient
  message = PubsubMessage.pb()
  while not stop.is_set():
    try:
      response = subscriber.pull(subscription=subscription, max_messages=1000,
                                 timeout=1)
    except exceptions.DeadlineExceeded:
      continue
    received = response._pb.received_messages  # pylint: disable=protected-access
    if not received:
      continue
    out = []
    for r in received:
      record = json.loads(r.message.data)
      out.append(message(data=json.dumps({
          'key': record['key'], 'sent_at': record['sent_at'],
          'model_version': 'echo', 'predictions': {}}).encode()))
    PublisherClient.publish(publisher, topic=topic, messages=out, timeout=30)
    subscriber.acknowledge(subscription=subscription,
                           ack_ids=[r.ack_id for r in received])


def run(n, rate):
  """The feeder's figures for `n` messages at `rate` against the loop."""
  with pubsub_service.emulator_with_topics(PROJECT, TOPICS) as (
      host, publisher, subscriber):
    stop = threading.Event()
    loop = threading.Thread(target=_echo, daemon=True, args=(
        subscriber, subscriber.subscription_path(PROJECT, 'requests-sub'),
        publisher, publisher.topic_path(PROJECT, 'predictions'), stop))
    cpu = time.process_time()
    loop.start()
    try:
      figures = pubsub_service.run_feeder(
          'benchmarks.stream_predict',
          ['--feed', str(n), '--feed_rate', str(rate)], host, 600)
    finally:
      stop.set()
      loop.join()
    figures['loop_cpu_s'] = round(time.process_time() - cpu, 2)
    figures.pop('started_at', None)
    return figures


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--messages', type=int, default=10000)
  parser.add_argument('--rates', default='1600,3200,6400')
  args = parser.parse_args(argv)
  os.makedirs(common.SCRATCH, exist_ok=True)
  print(f'machine: {common.machine()}', flush=True)
  for rate in [float(r) for r in args.rates.split(',') if r]:
    print(json.dumps(run(args.messages, rate)), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
