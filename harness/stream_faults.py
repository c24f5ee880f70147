"""What the streaming fault tests share: topics on the Pub/Sub emulator,
comments to publish, everything a job published read back, and the tally
of a run against the replay of the same stream.

A tally names, per input id: whether it came out at all (lost if not),
how many times (duplicates), and whether its outcome equals the batch
replay's (differing). It knows nothing of moderation: a streaming job
(moderate, stream_predict) gives its outputs' id and its replay's outcomes.
"""
import collections
import dataclasses
import json
import time

PULL_TIMEOUT_S = 5


def make_topics(project, names, ack_deadline_s=10):
  """Creates topic NAME and subscription NAME-sub for each name; returns
  {name: (topic path, subscription path)}."""
  from google.cloud import pubsub_v1
  publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
  out = {}
  for name in names:
    topic = publisher.topic_path(project, name)
    publisher.create_topic(name=topic)
    sub = subscriber.subscription_path(project, f'{name}-sub')
    subscriber.create_subscription(name=sub, topic=topic,
                                   ack_deadline_seconds=ack_deadline_s)
    out[name] = (topic, sub)
  return out


def publish(topic, payloads, interval_s=0.0):
  """Publishes bytes payloads (a publish during an outage waits for it);
  with `interval_s`, one at a time, that far apart: a trickle, for a fault
  to strike mid-stream."""
  from google.cloud import pubsub_v1
  publisher = pubsub_v1.PublisherClient()
  if interval_s:
    for p in payloads:
      publisher.publish(topic, p).result(timeout=300)
      time.sleep(interval_s)
    return
  for future in [publisher.publish(topic, p) for p in payloads]:
    future.result(timeout=300)


class Collector:
  """Pulls (and acknowledges) everything published to subscriptions."""

  def __init__(self, subscriptions):
    from google.cloud import pubsub_v1
    self._subscriber = pubsub_v1.SubscriberClient()
    self.received = {sub: [] for sub in subscriptions}

  def pull(self, subscription):
    from google.api_core import exceptions
    try:
      response = self._subscriber.pull(subscription=subscription,
                                       max_messages=500,
                                       timeout=PULL_TIMEOUT_S)
    except exceptions.DeadlineExceeded:
      return 0
    messages = response.received_messages
    if messages:
      self._subscriber.acknowledge(subscription=subscription,
                                   ack_ids=[m.ack_id for m in messages])
      self.received[subscription].extend(json.loads(m.message.data)
                                         for m in messages)
    return len(messages)

  def until(self, done, timeout_s, quiet_s=0.0):
    """Pulls until `done(received)` and then `quiet_s` without news, or
    until `timeout_s`; returns whether `done` held."""
    deadline = time.monotonic() + timeout_s
    settled_at = None
    while time.monotonic() < deadline:
      got = sum(self.pull(sub) for sub in self.received)
      if done(self.received):
        settled_at = settled_at or time.monotonic()
        if got:
          settled_at = time.monotonic()
        if time.monotonic() - settled_at >= quiet_s:
          return True
      elif not got:
        time.sleep(0.2)
    return done(self.received)


@dataclasses.dataclass
class Tally:
  inputs: int
  outputs: int          # inputs with an output
  dead_lettered: int    # inputs with a dead letter and no output
  lost: int             # inputs with neither
  duplicates: int       # outputs and dead letters beyond one per input
  decided_twice: int    # inputs with more than one output
  differing: int        # inputs whose output is not the replay's
  dead_by_reason: dict

  def as_dict(self):
    return dataclasses.asdict(self)


def tally(input_ids, outputs, dead_letters, output_id, outcome, replay):
  """`outputs`, `dead_letters`: the records a run published (all copies);
  `output_id(record)`, `outcome(record)`: an output's input id and what is
  compared with `replay` ({input id: outcome} of the batch replay)."""
  by_id = collections.defaultdict(list)
  for record in outputs:
    by_id[output_id(record)].append(outcome(record))
  dead = collections.defaultdict(list)
  for record in dead_letters:
    dead[record.get('key')].append(record['reason'])
  ids = list(input_ids)
  return Tally(
      inputs=len(ids),
      outputs=sum(1 for i in ids if by_id.get(i)),
      dead_lettered=sum(1 for i in ids if not by_id.get(i) and dead.get(i)),
      lost=sum(1 for i in ids if not by_id.get(i) and not dead.get(i)),
      duplicates=sum(max(0, len(by_id.get(i, [])) + len(dead.get(i, [])) - 1)
                     for i in ids),
      decided_twice=sum(1 for i in ids if len(by_id.get(i, [])) > 1),
      differing=sum(1 for i in ids if by_id.get(i) and
                    any(o != replay.get(i) for o in by_id[i])),
      dead_by_reason=dict(collections.Counter(
          r['reason'] for r in dead_letters)))
