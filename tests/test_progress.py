"""Progress lines while a local run lasts (pipelines/progress.py): live
counters from inside the FnApiRunner's bundles (in-process and gRPC workers)
and from the DirectRunner's result, the job's own results untouched."""
import logging
import re
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import launch
from pipelines import local_runner
from pipelines import progress
from pipelines import summary
from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import

RECORDS = 120


class _Slow(beam.DoFn):
  """Counts like a job's stages do, slowly enough to be watched."""

  def __init__(self):
    self._read = Metrics.counter('read', 'records')
    self._dead = Metrics.counter('dead_letter', 'missing_key')

  def process(self, element):
    time.sleep(0.01)
    self._read.inc()
    if element % 10 == 0:
      self._dead.inc()
    yield element


def _progress_lines(caplog):
  return [r.getMessage() for r in caplog.records
          if r.name == progress.__name__]


def _run(caplog, monkeypatch, *options):
  monkeypatch.setenv(progress.ENV_EVERY_S, '0.2')
  pipeline = beam.Pipeline(options=PipelineOptions(list(options)))
  _ = pipeline | beam.Create(range(RECORDS)) | beam.ParDo(_Slow())
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    result = progress.run(pipeline)
    result.wait_until_finish()
  lines = _progress_lines(caplog)
  read = [int(re.search(r'read/records ([\d,]+)', l)[1].replace(',', ''))
          for l in lines]
  return result, lines, read


@pytest.mark.parametrize('options', [
    ('--runner=FnApiRunner',),  # the in-process worker: bundles read live
    ('--runner=FnApiRunner', '--direct_num_workers=2',
     '--direct_running_mode=multi_threading'),  # gRPC: progress requests
], ids=['fnapi-in-process', 'fnapi-grpc'])
def test_counters_are_logged_while_the_run_lasts(caplog, monkeypatch,
                                                 options):
  result, lines, read = _run(caplog, monkeypatch, *options)
  # Lines came while records were still being read, counts only grew, and
  # the run's own metrics are whole.
  assert any(0 < n < RECORDS for n in read), lines
  assert read == sorted(read)
  assert all(l.split(': ', 1)[1].startswith('read/records') for l in lines)
  assert all(re.search(r'dead letters [\d,]+$', l) for l in lines)
  counts = summary.counters(result)
  assert counts['read'] == {'records': RECORDS}
  assert counts['dead_letter'] == {'missing_key': RECORDS // 10}


def test_a_streaming_run_logs_its_counters_until_it_is_cancelled(
    caplog, monkeypatch, pubsub_emulator):
  """The DirectRunner's result is polled while the job runs. (Its counts
  are Beam's: in Beam 2.77 the DirectRunner credits a step's counters to the
  first bundle each worker thread ran, so later bundles do not show.)"""
  from google.cloud import pubsub_v1
  monkeypatch.setenv(progress.ENV_EVERY_S, '0.2')
  publisher = pubsub_v1.PublisherClient()
  subscriber = pubsub_v1.SubscriberClient()
  topic = publisher.topic_path('progress-test', 'numbers')
  subscription = subscriber.subscription_path('progress-test', 'numbers-sub')
  publisher.create_topic(name=topic)
  subscriber.create_subscription(name=subscription, topic=topic)
  pipeline = beam.Pipeline(options=PipelineOptions(
      ['--runner=DirectRunner', '--streaming']))
  _ = (pipeline | beam.io.ReadFromPubSub(subscription=subscription)
       | beam.Map(int) | beam.ParDo(_Slow()))
  local_runner.speed_up(pipeline)  # 1 s pulls: cancel() returns soon
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    result = progress.run(pipeline)
    try:
      for i in range(40):
        publisher.publish(topic, str(i).encode()).result(timeout=30)
      deadline = time.monotonic() + 60
      while not _progress_lines(caplog) and time.monotonic() < deadline:
        time.sleep(0.2)
    finally:
      canceller = threading.Thread(target=result.cancel, daemon=True)
      canceller.start()
      canceller.join(timeout=60)
  lines = _progress_lines(caplog)
  assert lines and all('read/records' in l for l in lines), lines
  time.sleep(0.5)
  assert 'progress' not in {t.name for t in threading.enumerate()}


def test_no_lines_when_switched_off(caplog, monkeypatch):
  monkeypatch.setenv(progress.ENV_EVERY_S, '0')
  pipeline = beam.Pipeline(options=PipelineOptions(['--runner=FnApiRunner']))
  _ = pipeline | beam.Create(range(20)) | beam.ParDo(_Slow())
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    result = progress.run(pipeline)
  assert not [r for r in caplog.records if r.name == progress.__name__]
  assert result.metrics().query(MetricsFilter())['counters']


def test_the_line_puts_what_was_read_first_and_sums_the_dead_letters():
  assert progress.line({
      'output': {'predictions': 1200},
      'read': {'records': 1234},
      'dead_letter': {'missing_key': 30, 'wrong_type': 4},
      'keys': {'keyed': 1234}}) == (
          'read/records 1,234 · keys/keyed 1,234 · output/predictions 1,200 '
          '· dead letters 34')


@pytest.mark.parametrize('text, seconds', [
    ('', progress.DEFAULT_EVERY_S), ('2.5', 2.5), ('0', 0.0), ('-1', 0.0),
    ('soon', progress.DEFAULT_EVERY_S)])
def test_the_interval_comes_from_the_environment(monkeypatch, text, seconds):
  monkeypatch.setenv(progress.ENV_EVERY_S, text)
  assert progress.every_s() == seconds


def test_main_leaves_beams_own_messages_on(monkeypatch):
  """A Dataflow submission logs its job id and console URL at INFO (Beam's
  apiclient); main() must not silence them, as it once did."""
  monkeypatch.setattr(logging.getLogger(), 'handlers', [])
  monkeypatch.setattr(logging.getLogger(), 'level', logging.WARNING)
  assert launch.main(lambda argv: 0, []) == 0
  dataflow = logging.getLogger(
      'apache_beam.runners.dataflow.internal.apiclient')
  assert dataflow.isEnabledFor(logging.INFO)
  assert logging.getLogger(progress.__name__).isEnabledFor(logging.INFO)
