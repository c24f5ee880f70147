"""Google's Pub/Sub emulator as a session-scoped pytest fixture.

The emulator ships with the Google Cloud CLI (a Java jar under the SDK root);
it is started on a free local port, awaited until it answers, exposed through
PUBSUB_EMULATOR_HOST (which google-cloud-pubsub and Beam's Pub/Sub IO on the
DirectRunner honour) and always stopped by its own pid.

  from harness.pubsub import pubsub_emulator  # noqa: F401
"""
import contextlib
import dataclasses
import glob
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from google.cloud import pubsub_v1

from harness import standins

START_TIMEOUT_S = 60


def emulator_jar():
  """The emulator jar under the gcloud SDK root, or None."""
  gcloud = shutil.which('gcloud')
  if not gcloud:
    return None
  root = subprocess.run(
      [gcloud, 'info', '--format=value(installation.sdk_root)'],
      capture_output=True, text=True, timeout=60, check=False).stdout.strip()
  jars = sorted(glob.glob(os.path.join(
      root, 'platform', 'pubsub-emulator', 'lib',
      'cloud-pubsub-emulator-*-all.jar')))
  return jars[-1] if jars else None


@dataclasses.dataclass(frozen=True)
class Emulator:
  host: str
  process: subprocess.Popen

  def pause(self):
    """Stops the emulator's process (SIGSTOP): calls hang, then time out,
    as against a service that went away; its messages are kept."""
    os.kill(self.process.pid, signal.SIGSTOP)

  def resume(self):
    os.kill(self.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def running_emulator(jar, java, log_dir):
  """Starts the emulator, sets PUBSUB_EMULATOR_HOST, yields 'host:port';
  always stops it by its pid and restores the environment."""
  with emulator(jar, java, log_dir) as running:
    yield running.host


@contextlib.contextmanager
def emulator(jar, java, log_dir):
  """running_emulator, yielding an Emulator (its process too, for fault
  tests that stop it)."""
  host = f'127.0.0.1:{standins.free_port()}'
  log = open(log_dir / 'emulator.log', 'wb')
  proc = subprocess.Popen(
      [java, '-jar', jar, '--host=127.0.0.1', f'--port={host.split(":")[1]}'],
      stdout=log, stderr=subprocess.STDOUT)
  previous = os.environ.get('PUBSUB_EMULATOR_HOST')
  try:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not standins.answers(f'http://{host}/'):
      if proc.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(f'Pub/Sub emulator did not start; see {log.name}')
      time.sleep(0.2)
    os.environ['PUBSUB_EMULATOR_HOST'] = host
    yield Emulator(host, proc)
  finally:
    if previous is None:
      os.environ.pop('PUBSUB_EMULATOR_HOST', None)
    else:
      os.environ['PUBSUB_EMULATOR_HOST'] = previous
    if proc.poll() is None:
      os.kill(proc.pid, signal.SIGCONT)  # a paused one cannot terminate
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope='session')
def pubsub_emulator(tmp_path_factory):
  """Yields 'host:port' of a running emulator; PUBSUB_EMULATOR_HOST is set.

  One emulator per test session, however many modules import the fixture.
  """
  jar = emulator_jar()
  java = shutil.which('java')
  if not jar or not java:
    pytest.skip('Pub/Sub emulator (gcloud SDK jar + java) not installed')
  with standins.shared('pubsub', lambda: running_emulator(
      jar, java, tmp_path_factory.mktemp('pubsub'))) as host:
    yield host


def pull_until(subscriber, subscription, count, deadline):
  """Pulls (and acknowledges) JSON messages from `subscription` until
  `count` came or time.monotonic() passes `deadline`; returns them decoded.
  How the streaming tests read a job's outputs back."""
  got = []
  while len(got) < count and time.monotonic() < deadline:
    response = subscriber.pull(
        subscription=subscription, max_messages=100, timeout=10)
    if response.received_messages:
      subscriber.acknowledge(
          subscription=subscription,
          ack_ids=[m.ack_id for m in response.received_messages])
      got.extend(json.loads(m.message.data)
                 for m in response.received_messages)
    else:
      time.sleep(0.5)
  return got


_PROJECTS = iter(range(1_000_000))


class Topics:
  """Topics with a subscription each, in a project of the test's own."""

  def __init__(self, *names, prefix='rs-test'):
    self.project = f'{prefix}-{next(_PROJECTS)}'
    self.publisher = pubsub_v1.PublisherClient()
    self.subscriber = pubsub_v1.SubscriberClient()
    self.topic, self.sub = {}, {}
    for name in names:
      topic = self.publisher.topic_path(self.project, name)
      self.publisher.create_topic(name=topic)
      sub = self.subscriber.subscription_path(self.project, name + '-sub')
      self.subscriber.create_subscription(name=sub, topic=topic)
      self.topic[name], self.sub[name] = topic, sub

  def publish(self, name, payloads, **attributes):
    futures = [self.publisher.publish(self.topic[name], data, **attributes)
               for data in payloads]
    for f in futures:
      f.result(timeout=30)

  def pull(self, name, count, deadline):
    return pull_until(self.subscriber, self.sub[name], count, deadline)
