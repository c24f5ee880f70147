"""The Pub/Sub side of the streaming benchmarks: the emulator with a job's
topics, and the feeder process that publishes and receives.

The emulator and the feeder stand for the Pub/Sub service and its clients,
so they run on a core of their own where the machine has two: sharing the
pipeline's core, 20k comments offered at 1,200/s to the moderation job had
6,845 late instead of 3,195 (benchmarks.moderation).
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks import common


def service_cores():
  """(cores for the pipeline, cores for the emulator and the feeder): the
  last usable core stands in for the Pub/Sub service, as far as the
  machine allows (one core: everything shares it)."""
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) < 2:
    return set(cores), set(cores)
  return set(cores[:-1]), {cores[-1]}


@contextlib.contextmanager
def emulator_with_topics(project, names):
  """Starts the emulator (gcloud SDK jar + java, as the tests start it) on
  the service core, creates each topic NAME with a subscription NAME-sub,
  and leaves this process on the pipeline cores; yields (host, publisher,
  subscriber)."""
  import pathlib
  from google.cloud import pubsub_v1
  from harness import pubsub as pubsub_harness
  log_dir = pathlib.Path(tempfile.mkdtemp(prefix='bench-pubsub-',
                                          dir=common.SCRATCH))
  pipeline_cores, service = service_cores()
  os.sched_setaffinity(0, service)  # the emulator's JVM inherits it
  try:
    with pubsub_harness.running_emulator(pubsub_harness.emulator_jar(),
                                         shutil.which('java'),
                                         log_dir) as host:
      os.sched_setaffinity(0, pipeline_cores)
      publisher = pubsub_v1.PublisherClient()
      subscriber = pubsub_v1.SubscriberClient()
      for name in names:
        topic = publisher.topic_path(project, name)
        publisher.create_topic(name=topic)
        subscriber.create_subscription(
            name=subscriber.subscription_path(project, name + '-sub'),
            topic=topic)
      yield host, publisher, subscriber
  finally:
    shutil.rmtree(log_dir, ignore_errors=True)


def run_feeder(module, args, host, timeout):
  """Runs `python -m module args...` on the service cores against the
  emulator at `host`; returns the JSON object of its last line."""
  _, service = service_cores()
  feeder = subprocess.run(
      [sys.executable, '-m', module] + list(args),
      capture_output=True, text=True, timeout=timeout,
      env=dict(os.environ, PUBSUB_EMULATOR_HOST=host),
      preexec_fn=lambda: os.sched_setaffinity(0, service))
  if feeder.returncode:
    # From the traceback on (gRPC logs noise at exit, after it).
    err = feeder.stderr
    start = err.find('Traceback')
    raise RuntimeError('feeder failed:\n' +
                       err[start if start >= 0 else -3000:][:3000])
  return json.loads(feeder.stdout.strip().splitlines()[-1])
