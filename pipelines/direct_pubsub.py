"""Local streaming runs read up to 1,000 Pub/Sub messages per bundle, not 10,
and wait at most a second on an empty subscription, not 30.

Beam's Python DirectRunner (2.77) reads Pub/Sub with one synchronous pull of
at most 10 messages per bundle (`_PubSubReadEvaluator._read_from_pubsub`),
and each of those bundles then passes through every transform of the
pipeline. That caps a local streaming pipeline at the runner's per-bundle
rate, whatever the pipeline does (benchmarks/optimisations.md: the local
moderation pipeline sustains 900 comments/s with the reads below, 600
without the follow-up pulls). A pull returns what the
subscription holds, so a wider pull changes nothing for a trickle of
messages, only how a backlog is cut into bundles. A pull may answer with
fewer messages than are waiting (the emulator with at most 100), so while
a backlog lasts follow-up pulls fill the bundle, for at most FILL_S: a
backlog of 10k comments then takes 10 bundles instead of 100, and every
step pays its per-bundle cost (a fresh DoFn copy, set-up, signature
inspection, empty bundles on side outputs) a tenth as often.

The same evaluator pulls with a 30 s deadline, and the source watermark
(the wall clock at each read) stands still while a pull waits: once a burst
of messages is drained, the last decisions waited up to 30 s for it (200
comments: first decision after 31 s). Pulls here wait at most
IDLE_WAIT_S, an empty answer (or the deadline passing) reads as no
messages, and the watermark moves on every second.

This swaps in Beam's own evaluator with the wider pull. It relies on
DirectRunner internals, so it checks for them and leaves Beam's reader in
place, with a warning, when they are not there; other runners read Pub/Sub
their own way and are never touched.
"""
import logging
import time

PULL_MESSAGES = 1000
IDLE_WAIT_S = 1.0
FILL_S = 0.2

_LOG = logging.getLogger(__name__)
_installed = False


class _WidePulls(object):
  """A subscriber client whose pulls ask for PULL_MESSAGES messages, wait
  at most IDLE_WAIT_S for the first and FILL_S for the rest."""

  def __init__(self, client):
    self._client = client

  def pull(self, subscription, max_messages, timeout):
    del max_messages, timeout  # the DirectRunner's 10 messages and 30 s
    from google.pubsub_v1.types import PullResponse
    received = self._pull(subscription, PULL_MESSAGES, IDLE_WAIT_S)
    started = time.monotonic()
    while (received and len(received) < PULL_MESSAGES and
           time.monotonic() - started < FILL_S):
      more = self._pull(subscription, PULL_MESSAGES - len(received), FILL_S)
      if not more:
        break
      received.extend(more)
    return PullResponse(received_messages=received)

  def _pull(self, subscription, count, wait_s):
    from google.api_core import exceptions
    try:
      return list(self._client.pull(subscription=subscription,
                                    max_messages=count,
                                    timeout=wait_s).received_messages)
    except (exceptions.DeadlineExceeded, exceptions.RetryError):
      return []  # nothing within wait_s: read again later

  def __getattr__(self, name):
    return getattr(self._client, name)


def widen_pulls():
  """Installs the wider pull for DirectRunner pipelines of this process."""
  global _installed
  if _installed:
    return
  try:
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
    base = transform_evaluator._PubSubReadEvaluator
    registry = transform_evaluator.TransformEvaluatorRegistry
    overrides = registry._test_evaluators_overrides
    base._get_subscriber_client  # pylint: disable=pointless-statement
  except (ImportError, AttributeError) as e:
    _LOG.warning('Keeping the DirectRunner\'s 10-message Pub/Sub pulls: its '
                 'internals changed (%s).', e)
    return

  class _WidePullEvaluator(base):
    """Beam's Pub/Sub read evaluator, pulling PULL_MESSAGES at a time."""

    @classmethod
    def _get_subscriber_client(cls, transform):
      return _WidePulls(super()._get_subscriber_client(transform))

  overrides.setdefault(_DirectReadFromPubSub, _WidePullEvaluator)
  _installed = True
