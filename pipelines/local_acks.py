"""Local streaming runs acknowledge a Pub/Sub message once its outcome is
published, not when it is read.

Beam's Python DirectRunner acknowledges every message right after pulling
it. Its state (a rule's buffered comments, the windows it remembers) lives
in the process's memory, so a local job killed with messages in flight, or
buffered for their allowed lateness, loses them: Pub/Sub was told they were
done. (Dataflow acknowledges a message only once the first fused stage has
committed it to the job's persisted state; a worker's death loses nothing.)

With the local Pub/Sub speed-ups on (pipelines.local_runner), a job that
names its inputs' outcomes gets at-least-once delivery end to end instead:
the reader holds each message unacknowledged, its lease extended while the
job works on it, and acknowledges it once the job has published an outcome
for it (its decision, prediction or dead letter) to any output topic. A kill
then loses nothing: Pub/Sub redelivers what was not acknowledged to the job
started again on the same subscription. What it costs: a message whose
outcome was published just before the kill is redelivered and decided again
by a job that has forgotten its state (a duplicate, perhaps a different
decision), which the output's consumers deduplicate by id.

`AckOnOutcome(message_keys, outcome_key)` is how a job names them:
`message_keys(data)` the keys under which a message's outcome may come back
(with `attributes=True`, `message_keys(data, attributes)`: a job keyed by
an attribute), `outcome_key(payload)` the key of a published record (None:
not an outcome).

Leases are LEASE_S long, renewed every RENEW_EVERY_S: after a kill Pub/Sub
delivers the held messages again within LEASE_S (a longer lease would delay
them more; locally they must still be within the restarted job's allowed
lateness, docs/reliability.md). A message is leased for at most MAX_HOLD_S;
one still held then (an outcome that never came, a key that never matched)
is let go, and Pub/Sub delivers it again: duplicated, never lost.
"""
import collections
import dataclasses
import logging
import threading
import time
import typing

LEASE_S = 20
RENEW_EVERY_S = 5.0
MAX_HOLD_S = 1800
CALL_TIMEOUT_S = 10
BATCH = 1000
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AckOnOutcome:
  message_keys: typing.Callable   # bytes -> iterable of hashable keys
  outcome_key: typing.Callable    # bytes -> a key or None
  attributes: bool = False        # message_keys also takes the attributes

  def keys_of(self, message):
    if self.attributes:
      return self.message_keys(message.data, dict(message.attributes))
    return self.message_keys(message.data)


class _Held:
  __slots__ = ('client', 'subscription', 'keys', 'since')

  def __init__(self, client, subscription, keys, since):
    self.client, self.subscription = client, subscription
    self.keys, self.since = keys, since


class AckLedger:
  """The messages a local job holds, by ack id and by outcome key."""

  def __init__(self, outcomes, clock=time.monotonic):
    self._outcomes = outcomes
    self._clock = clock
    self._held = {}                             # ack id -> _Held
    self._by_key = collections.defaultdict(set)  # key -> ack ids
    self._to_ack = []                           # (client, sub, ack id)
    self._lock = threading.Lock()
    self._renewer = None
    self.acknowledged = 0
    self.released = 0

  def hold(self, client, subscription, received):
    """Holds freshly pulled messages (objects with .ack_id and
    .message.data) instead of acknowledging them."""
    now = self._clock()
    with self._lock:
      for r in received:
        keys = tuple(self._outcomes.keys_of(r.message))
        self._held[r.ack_id] = _Held(client, subscription, keys, now)
        for key in keys:
          self._by_key[key].add(r.ack_id)
      if self._renewer is None:
        self._renewer = threading.Thread(target=self._renew_forever,
                                         name='pubsub-leases', daemon=True)
        self._renewer.start()
    _call(client.modify_ack_deadline, subscription,
          [r.ack_id for r in received], ack_deadline_seconds=LEASE_S)

  def settle(self, payloads):
    """Acknowledges the held messages whose outcome is among the published
    `payloads`."""
    keys = {self._outcomes.outcome_key(p) for p in payloads}
    keys.discard(None)
    with self._lock:
      for key in keys:
        for ack_id in self._by_key.pop(key, ()):
          held = self._release(ack_id)
          if held is not None:
            self._to_ack.append((held.client, held.subscription, ack_id))
    self._flush_acks()

  def _release(self, ack_id):
    """Forgets a held message (lock held); returns it, or None."""
    held = self._held.pop(ack_id, None)
    if held is not None:
      for key in held.keys:
        ids = self._by_key.get(key)
        if ids is not None:
          ids.discard(ack_id)
          if not ids:
            del self._by_key[key]
    return held

  def _flush_acks(self):
    with self._lock:
      batch, self._to_ack = self._to_ack, []
    failed = []
    for (client, subscription), ack_ids in _grouped(batch).items():
      if _call(client.acknowledge, subscription, ack_ids):
        with self._lock:
          self.acknowledged += len(ack_ids)
      else:  # Pub/Sub unreachable: acknowledged at the next renewal
        failed += [(client, subscription, a) for a in ack_ids]
    if failed:
      with self._lock:
        self._to_ack.extend(failed)

  def renew(self):
    """Acknowledges what failed to be, extends the leases of held messages
    and lets go of those held longer than MAX_HOLD_S."""
    self._flush_acks()
    now = self._clock()
    with self._lock:
      expired = [a for a, h in self._held.items()
                 if now - h.since > MAX_HOLD_S]
      for ack_id in expired:
        self._release(ack_id)
      self.released += len(expired)
      leases = [(h.client, h.subscription, a) for a, h in self._held.items()]
    for (client, subscription), ack_ids in _grouped(leases).items():
      _call(client.modify_ack_deadline, subscription, ack_ids,
            ack_deadline_seconds=LEASE_S)
    if expired:
      _LOG.warning('Released %d Pub/Sub messages held over %d s without an '
                   'outcome: Pub/Sub will deliver them again.', len(expired),
                   MAX_HOLD_S)

  def _renew_forever(self):
    while True:
      time.sleep(RENEW_EVERY_S)
      try:
        self.renew()
      except Exception:  # pylint: disable=broad-except  # keep renewing
        _LOG.exception('Renewing Pub/Sub leases failed')

  @property
  def held(self):
    with self._lock:
      return len(self._held)


def _grouped(entries):
  out = collections.defaultdict(list)
  for client, subscription, ack_id in entries:
    out[(client, subscription)].append(ack_id)
  return out


def _call(method, subscription, ack_ids, **kwargs):
  """One acknowledge / modify_ack_deadline per BATCH ids; False when
  Pub/Sub could not be reached (retried by the caller later)."""
  from google.api_core import exceptions
  ok = True
  for i in range(0, len(ack_ids), BATCH):
    try:
      method(subscription=subscription, ack_ids=ack_ids[i:i + BATCH],
             timeout=CALL_TIMEOUT_S, **kwargs)
    except (exceptions.GoogleAPIError, ValueError) as e:
      _LOG.warning('Pub/Sub %s failed (%s); retrying later', method.__name__,
                   e)
      ok = False
  return ok


_ledger = None


def install(outcomes):
  """Makes this process's local Pub/Sub reads hold their messages until
  `outcomes` (an AckOnOutcome) says they are done, or with None acknowledge
  on read again (Beam's way); returns the ledger. One streaming job per
  process, as on any runner: the last job started decides."""
  global _ledger
  if outcomes is None:
    _ledger = None
  elif _ledger is None or _ledger._outcomes != outcomes:  # pylint: disable=protected-access
    _ledger = AckLedger(outcomes)
  return _ledger


def ledger():
  """The installed AckLedger, or None (Beam's acknowledge-on-read)."""
  return _ledger
