"""The DirectRunner's Pub/Sub reads and writes, widened, against Google's
emulator.

A backlog of messages is published first; a streaming pipeline reads the
subscription and records how many messages each bundle carried. Beam's own
reader cuts every backlog into bundles of at most 10, and waits up to 30 s on
an empty subscription (the source watermark stands still meanwhile). The
emulator answers a pull with at most 100 messages. Writes of plain payloads
are published a request per bundle chunk; other writes keep Beam's sink.
"""
import datetime
import threading
import time

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud import pubsub_v1

from pipelines import local_runner
from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import

PROJECT = 'direct-pubsub-test'
MESSAGES = 300
_bundles = []


class _RecordBundleSizes(beam.DoFn):
  """Appends (bundle size, payloads) to the module's list per bundle."""

  def start_bundle(self):
    self._payloads = []

  def process(self, data):
    self._payloads.append(data)

  def finish_bundle(self):
    if self._payloads:
      _bundles.append(self._payloads)


def _topic_and_subscription(name):
  """(publisher, topic, subscriber, subscription) for a new topic `name`."""
  publisher = pubsub_v1.PublisherClient()
  subscriber = pubsub_v1.SubscriberClient()
  topic = publisher.topic_path(PROJECT, name)
  publisher.create_topic(name=topic)
  sub = subscriber.subscription_path(PROJECT, name + '-sub')
  subscriber.create_subscription(name=sub, topic=topic)
  return publisher, topic, subscriber, sub


def test_a_backlog_is_read_in_bundles_wider_than_ten(pubsub_emulator):
  publisher, topic, _, sub = _topic_and_subscription('backlog')
  sent = {f'm{i:03d}'.encode() for i in range(MESSAGES)}
  for f in [publisher.publish(topic, data) for data in sorted(sent)]:
    f.result(timeout=30)

  local_runner.widen_pulls()
  local_runner.widen_pulls()  # idempotent
  p = beam.Pipeline(options=PipelineOptions(
      runner='DirectRunner', streaming=True))
  _ = (p | beam.io.ReadFromPubSub(subscription=sub)
       | beam.ParDo(_RecordBundleSizes()))
  result = p.run()
  try:
    deadline = time.monotonic() + 120
    while (sum(len(b) for b in _bundles) < MESSAGES and
           time.monotonic() < deadline):
      time.sleep(0.2)
  finally:
    # cancel() can block while a pull is in flight: bound it.
    threading.Thread(target=result.cancel, daemon=True).start()
  received = [data for bundle in _bundles for data in bundle]
  assert sorted(received) == sorted(sent)
  # Wider than Beam's 10, and than the emulator's 100 per pull (follow-up
  # pulls fill the bundle while the backlog lasts).
  assert max(len(b) for b in _bundles) > 100
  assert len(_bundles) < MESSAGES / 10


def test_a_pull_on_an_empty_subscription_answers_within_the_idle_wait(
    pubsub_emulator):
  publisher, topic, subscriber, sub = _topic_and_subscription('quiet')
  pulls = local_runner._WidePulls(subscriber)  # pylint: disable=protected-access
  started = time.monotonic()
  received = pulls.read(sub)
  waited = time.monotonic() - started
  assert received == []
  # Well under the DirectRunner's 30 s (it waits IDLE_WAIT_S, 1 s).
  assert waited < 15, waited
  publisher.publish(topic, b'late').result(timeout=30)
  assert [m.message.data for m in pulls.read(sub)] == [b'late']


def test_one_read_takes_a_backlog_beyond_one_pull_and_a_trickle_at_once(
    pubsub_emulator):
  publisher, topic, subscriber, sub = _topic_and_subscription('fill')
  sent = [f'f{i:03d}'.encode() for i in range(250)]
  for f in [publisher.publish(topic, data) for data in sent]:
    f.result(timeout=30)
  pulls = local_runner._WidePulls(subscriber)  # pylint: disable=protected-access
  received = pulls.read(sub)
  got = [m.message.data for m in received]
  assert sorted(got) == sent  # 250 in one read: more than one pull's 100
  subscriber.acknowledge(subscription=sub,
                         ack_ids=[m.ack_id for m in received])
  # A trickle: one message waiting is read at once; the follow-up pull
  # that finds nothing more waits FILL_S, not IDLE_WAIT_S.
  publisher.publish(topic, b'one').result(timeout=30)
  started = time.monotonic()
  received = pulls.read(sub)
  waited = time.monotonic() - started
  assert [m.message.data for m in received] == [b'one']
  assert waited < local_runner.IDLE_WAIT_S, waited


def test_the_next_bundle_is_read_while_the_runner_works_on_the_last(
    pubsub_emulator):
  publisher, topic, subscriber, sub = _topic_and_subscription('ahead')
  publisher.publish(topic, b'first').result(timeout=30)
  reads = local_runner._ReadAhead(local_runner._WidePulls(subscriber))  # pylint: disable=protected-access
  (first,) = reads.pull(subscription=sub, max_messages=10,
                        timeout=30).received_messages
  assert first.message.data == b'first'
  publisher.publish(topic, b'second').result(timeout=30)
  time.sleep(2 * local_runner.IDLE_WAIT_S)  # the runner at work meanwhile
  asked_at = time.time()
  received = []
  for _ in range(3):  # a read that found nothing may come first
    received = reads.pull(subscription=sub, max_messages=10,
                          timeout=30).received_messages
    if received:
      break
  (second,) = received
  assert second.message.data == b'second'
  # Read before it was asked for; its watermark is when it was read.
  assert reads.read_at < asked_at
  subscriber.acknowledge(subscription=sub,
                         ack_ids=[first.ack_id, second.ack_id])


def test_pulled_messages_carry_data_attributes_and_publish_time(
    pubsub_emulator):
  publisher, topic, subscriber, sub = _topic_and_subscription('fields')
  before = datetime.datetime.now(datetime.timezone.utc)
  publisher.publish(topic, b'payload', origin='test').result(timeout=30)
  pulls = local_runner._WidePulls(subscriber)  # pylint: disable=protected-access
  (received,) = pulls.read(sub)
  message = received.message
  assert message.data == b'payload'
  assert dict(message.attributes) == {'origin': 'test'}
  assert message.message_id
  # Beam's reader stamps elements with it: it must be aware and in UTC.
  assert message.publish_time.tzinfo == datetime.timezone.utc
  assert abs(message.publish_time - before) < datetime.timedelta(minutes=1)
  assert received.ack_id


def _published(subscriber, sub, count, deadline_s=60):
  """Pulls (and acks) until `count` messages arrived or the deadline passed."""
  got = []
  deadline = time.monotonic() + deadline_s
  while len(got) < count and time.monotonic() < deadline:
    response = subscriber.pull(subscription=sub, max_messages=100, timeout=10)
    if response.received_messages:
      got.extend(m.message.data for m in response.received_messages)
      subscriber.acknowledge(
          subscription=sub,
          ack_ids=[m.ack_id for m in response.received_messages])
  return got


def _transform_types(pipeline):
  types = set()

  class _Visitor(beam.pipeline.PipelineVisitor):

    def enter_composite_transform(self, node):
      types.add(type(node.transform).__name__)

    def visit_transform(self, node):
      types.add(type(node.transform).__name__)

  pipeline.visit(_Visitor())
  return types


def test_plain_writes_are_published_a_request_per_bundle_chunk(
    pubsub_emulator, monkeypatch):
  _, topic, subscriber, sub = _topic_and_subscription('written')
  # Several requests for one bundle: the split must lose nothing.
  monkeypatch.setattr(local_runner, 'PUBLISH_MESSAGES', 40)
  sent = [f'w{i:03d}'.encode() for i in range(250)]
  p = beam.Pipeline(options=PipelineOptions(runner='DirectRunner'))
  _ = p | beam.Create(sent) | beam.io.WriteToPubSub(topic)
  local_runner.publish_per_bundle(p)
  types = _transform_types(p)
  assert '_PublishPerBundle' in types and 'WriteToPubSub' not in types
  p.run().wait_until_finish()
  assert sorted(_published(subscriber, sub, len(sent))) == sent


def test_writes_with_attributes_keep_beams_sink():
  p = beam.Pipeline(options=PipelineOptions(runner='DirectRunner'))
  messages = p | beam.Create([PubsubMessage(b'x', {'a': 'b'})])
  _ = messages | 'Attributes' >> beam.io.WriteToPubSub(
      'projects/some-project/topics/t', with_attributes=True)
  _ = messages | 'Plain' >> beam.Map(lambda m: m.data) | beam.io.WriteToPubSub(
      'projects/some-project/topics/t')
  local_runner.publish_per_bundle(p)
  types = _transform_types(p)
  assert {'WriteToPubSub', '_PublishPerBundle'} <= types


def test_remembered_dofn_specs_are_beams_and_per_class():
  from apache_beam.transforms import userstate
  from transforms.moderation.comment_claims import ClaimCommentIds
  from transforms.moderation.rule import ModerateComments
  local_runner.remember_dofn_specs()
  stateful = [ModerateComments(24, 60)._fn, ClaimCommentIds(24, 60)._fn]
  remembered = [userstate.get_dofn_specs(fn) for fn in stateful]
  assert [{s.name for s in specs[0]} for specs in remembered] == [
      {'buffer', 'ledger', 'horizon', 'timer_at'}, {'claims'}]
  assert [{t.name for t in specs[1]} for specs in remembered] == [
      {'ts-tick'}, {'ts-prune'}]  # Beam's names for them
  # A second instance gets the same specs from the class's answer, and a
  # caller changing what it got changes nothing remembered.
  again = userstate.get_dofn_specs(ModerateComments(1, 0)._fn)
  assert again == remembered[0]
  again[0].clear()
  assert userstate.get_dofn_specs(stateful[0]) == remembered[0]
  assert userstate.is_stateful_dofn(stateful[1])
  assert not userstate.is_stateful_dofn(beam.Map(len).dofn)
  # An instance with methods of its own is asked every time.
  assert local_runner._specs_key(  # pylint: disable=protected-access
      _WithOwnMethod()) is None


class _WithOwnMethod(beam.DoFn):

  def __init__(self):
    super().__init__()
    self.helper = self.process

  def process(self, element):
    yield element
