"""What a job run on this machine's runners does differently, in one place.

Runner choice (`pick_runner`): batch jobs default to the FnApiRunner, the
fastest local runner, which, unlike the DirectRunner, does not first try to
download the Prism binary; streaming jobs keep the DirectRunner (TestStream,
Pub/Sub). `--direct_num_workers=N` alone is ignored by Beam (its default
running mode runs one worker and logs a warning); here it means N worker
threads, which share the process and its loaded model. Pass
`--direct_running_mode` to choose otherwise.

Pub/Sub speed-ups for local streaming runs (`speed_up`), on by default,
off with `--local_fast_pubsub=false` or LOCAL_FAST_PUBSUB=0 in the
environment; Dataflow and other runners read and write Pub/Sub their own
way and are never touched:

- Reads. Beam's Python DirectRunner reads Pub/Sub with one synchronous pull
  of at most 10 messages per bundle, each bundle then passing through every
  step of the pipeline, so a local streaming job runs at the runner's
  per-bundle rate whatever it does; and it pulls with a 30 s deadline while
  the source watermark (the wall clock at each read) stands still, so after
  a burst the last results wait up to 30 s (apache/beam#25442). Here pulls
  ask for up to PULL_MESSAGES, follow-up pulls fill a bundle while a backlog
  lasts (for at most FILL_S), and an empty subscription is answered within
  IDLE_WAIT_S, so the watermark moves every second. A trickle of messages is
  read as before; only a backlog is cut into fewer, larger bundles. A thread
  of the reader's own pulls the next bundle while the runner's worker thread
  processes the last one (the DirectRunner reads on that same thread, which
  otherwise waits out the pulls' round trips); a bundle's watermark is still
  the wall clock when it was read. This swaps in Beam's own evaluator with
  the wider pull; it relies on DirectRunner internals, so it checks for them
  and leaves Beam's reader in place, with a warning, when they are not
  there.
- Writes. Beam's WriteToPubSub builds a PublisherClient (a gRPC channel) in
  setup(), which the DirectRunner calls for every bundle, and waits for its
  publish futures every 100 messages. Plain-payload writes are replaced by
  one client per process and one Publish request per PUBLISH_MESSAGES,
  awaited before the bundle ends (at-least-once, as Beam's).
- Outages. A pull that fails (Pub/Sub unreachable) reads nothing and the
  job reads again a moment later; a publish that fails is retried with
  backoff for up to PUBLISH_DEADLINE_S: a Pub/Sub outage stalls the job
  instead of ending it (Beam's DirectRunner fails the pipeline at the first
  error, where Dataflow retries).
- Acknowledgements. A job that names its messages' outcomes
  (`speed_up(..., acks=local_acks.AckOnOutcome(...))`) has each message
  acknowledged once its outcome is published, not when it is read, so a
  killed local job loses nothing (pipelines/local_acks.py).

DoFn introspection, every local run (`pick_runner`). Beam asks which state
and timers a DoFn declares (`userstate.get_dofn_specs`: the signature of
each of its methods) several times per step while the pipeline is built,
again for every bundle processor the FnApiRunner creates, and, on the
DirectRunner, for every bundle of every step; here the answer is remembered
per DoFn class (per function for a Map's), which the signatures cannot
change.

State. stream_predict's dedup keeps its keys in
transforms.streaming.dedup.LOCAL_SHARDS shards on local runners
(`dedup_shards`), a shard per key elsewhere: the DirectRunner walks every key
a stateful step has ever seen between any two bundles.

What each bought: benchmarks/optimisations.md.
"""
import datetime
import logging
import os
import queue
import threading
import time
import types
import weakref

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.pipeline import PTransformOverride
from apache_beam.utils.timestamp import Timestamp

from common.process_cache import load_once
from pipelines import launch
from pipelines import local_acks
from pipelines.flags import Flag

PULL_MESSAGES = 1000
IDLE_WAIT_S = 1.0
FILL_S = 0.2
# Pub/Sub's limits on one Publish request: 1,000 messages, 10 MB (payloads
# up to 9 MB: headroom for the request's own fields).
PUBLISH_MESSAGES = 1000
PUBLISH_BYTES = 9_000_000
PUBLISH_TIMEOUT_S = 30
PUBLISH_DEADLINE_S = 600

ENV_SWITCH = 'LOCAL_FAST_PUBSUB'
FAST_PUBSUB = Flag(
    'local_fast_pubsub', switch=True, default=True,
    help='Local streaming runs only: read Pub/Sub in bundles of up to 1,000 '
    'messages with a 1 s idle wait, and publish a bundle per request '
    '(docs/architecture.md). false (or LOCAL_FAST_PUBSUB=0) keeps Beam\'s '
    'DirectRunner reader and writer as they are.')

_LOG = logging.getLogger(__name__)
_installed = False
_specs_remembered = False
_LOCAL_RUNNERS = ('DirectRunner', 'FnApiRunner', 'BundleBasedDirectRunner',
                  'SwitchingDirectRunner', 'PrismRunner')


def runner_name(options):
  """The runner's class name ('DataflowRunner', ...) however it was given
  (a name, a dotted path, an object), or None when none was named."""
  runner = options.view_as(StandardOptions).runner
  if runner is None:
    return None
  name = runner if isinstance(runner, str) else type(runner).__name__
  return name.split('.')[-1]


def is_local(options):
  """True when the job runs in this process tree (not on Dataflow & co.)."""
  name = runner_name(options)
  return name is None or name in _LOCAL_RUNNERS


def runs_worker_processes(options):
  """True when a local run starts SDK worker processes of its own
  (--direct_running_mode=multi_processing) instead of working in this one."""
  return (is_local(options) and
          options.view_as(DirectOptions).direct_running_mode ==
          'multi_processing')


def pick_runner(options):
  """Picks the runner when the user named none and, for a local run,
  remembers DoFn specs (see the module doc); returns `options`."""
  standard = options.view_as(StandardOptions)
  if standard.runner is None:
    standard.runner = 'DirectRunner' if standard.streaming else 'FnApiRunner'
  _check_runner(standard.runner)
  direct = options.view_as(DirectOptions)
  chosen = options.get_all_options(drop_default=True)
  if direct.direct_num_workers != 1 and 'direct_running_mode' not in chosen:
    direct.direct_running_mode = 'multi_threading'
  if is_local(options):
    remember_dofn_specs()
  return options


def _check_runner(runner):
  """A runner name Beam does not know is one usage line (Beam's own error
  comes as a traceback from inside Pipeline())."""
  if not isinstance(runner, str):
    return  # a runner object, passed by code
  from apache_beam.runners.runner import create_runner  # pylint: disable=import-outside-toplevel
  try:
    create_runner(runner)
  except (ValueError, ImportError, AttributeError) as e:
    known = str(e).partition('Valid values are ')[2]
    raise launch.UsageError('--runner', f'unknown runner {runner!r}' + (
        f'; Beam knows {known}' if known else f': {e}')) from None


def host_shared_model(pipeline, handler):
  """In a local multi-process run whose model is shared (--share_model),
  the launcher loads the model and serves it to the worker processes: it
  has imported TensorFlow already to check the model, so no worker imports
  it or holds a copy. The load runs in a thread while the workers start
  (other processes: it costs them nothing); a worker needing the model
  first waits on Beam's lock for it. Elsewhere (Dataflow) the first worker
  process of each machine to need the model hosts it, as Beam does by
  itself. Call while building the pipeline, before it runs."""
  if not (handler.share_model_across_processes() and
          runs_worker_processes(pipeline.options)):
    return

  def find():
    from apache_beam.ml.inference import base
    from apache_beam.utils import multi_process_shared
    # The tags RunInference acquires the model under (model_identifier +
    # copy number): Beam's own naming, so both sides agree.
    return (base._get_tags_for_copies,  # pylint: disable=protected-access
            multi_process_shared.MultiProcessShared)
  found = _beam_internals(
      'The first worker to need the model hosts it, as Beam does', find)
  if found is None:
    return
  tags_for_copies, shared_object = found
  for tag in tags_for_copies(handler.model_tag, handler.model_copies()):
    shared = shared_object(
        handler.load_model, tag=tag, always_proxy=True)
    threading.Thread(target=shared.acquire, name=f'host-{tag}',
                     daemon=True).start()


def dedup_shards(options):
  """The shards of stream_predict's dedup state for a run with `options`:
  LOCAL_SHARDS on a local runner, None (a shard per key) elsewhere."""
  from transforms.streaming import dedup  # pylint: disable=import-outside-toplevel
  return dedup.LOCAL_SHARDS if is_local(options) else None


def fast_pubsub(pipeline, flag=True):
  """Whether `pipeline` gets the Pub/Sub speed-ups: a local streaming run,
  with the flag on and the environment not saying 0."""
  options = pipeline.options
  return (flag and os.environ.get(ENV_SWITCH, '1') != '0' and is_local(options)
          and options.view_as(StandardOptions).streaming)


def speed_up(pipeline, flag=True, acks=None):
  """Applies the Pub/Sub speed-ups to a built `pipeline` when `fast_pubsub`
  says so (call after the graph is built, before it runs); returns whether
  they were applied. `acks`: a local_acks.AckOnOutcome, to acknowledge
  each message once its outcome is published."""
  if not fast_pubsub(pipeline, flag):
    return False
  local_acks.install(acks)
  widen_pulls()
  publish_per_bundle(pipeline)
  return True


def _beam_internals(fallback, find):
  """find() -> the Beam internals a speed-up relies on, or None (logging
  `fallback`, what runs instead) where Beam no longer has them."""
  try:
    return find()
  except (ImportError, AttributeError) as e:
    _LOG.warning('%s: Beam\'s internals changed (%s).', fallback, e)
    return None


def _specs_key(dofn):
  """What a DoFn's state and timer specs depend on: its class, or for a
  Map's wrapper the wrapped function's definition; None where an instance
  could differ (methods of its own, a callable without code)."""
  from apache_beam.transforms.core import CallableWrapperDoFn  # pylint: disable=import-outside-toplevel
  if isinstance(dofn, CallableWrapperDoFn):
    code = getattr(getattr(dofn, '_fn', None), '__code__', None)
    if code is None:
      return None
    return (CallableWrapperDoFn, code.co_filename, code.co_firstlineno,
            code.co_name)
  if any(isinstance(v, types.MethodType) for v in vars(dofn).values()):
    return None
  return type(dofn)


def remember_dofn_specs():
  """Remembers `userstate.get_dofn_specs` per DoFn class for this process
  (see the module doc); Beam's own answer is the first one."""
  global _specs_remembered
  if _specs_remembered:
    return

  def find():
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import userstate
    transform_evaluator.get_dofn_specs  # pylint: disable=pointless-statement
    return transform_evaluator, userstate
  found = _beam_internals('Not remembering DoFn specs', find)
  if found is None:
    return
  transform_evaluator, userstate = found
  found_by_beam = userstate.get_dofn_specs
  remembered = {}

  def get_dofn_specs(dofn):
    key = _specs_key(dofn)
    if key is None:
      return found_by_beam(dofn)
    specs = remembered.get(key)
    if specs is None:
      specs = remembered[key] = found_by_beam(dofn)
    return set(specs[0]), set(specs[1])

  userstate.get_dofn_specs = get_dofn_specs
  transform_evaluator.get_dofn_specs = get_dofn_specs
  _specs_remembered = True


class _Message(object):
  """The fields of a received message Beam's reader uses, read once from the
  protobuf: the client's proto-plus wrappers re-wrap a message on every
  attribute read, which was most of the reader's time per message."""
  __slots__ = ('data', 'attributes', 'message_id', 'publish_time',
               'ordering_key')

  def __init__(self, pb):
    self.data = pb.data
    self.attributes = pb.attributes
    self.message_id = pb.message_id
    self.publish_time = (
        pb.publish_time.ToDatetime(tzinfo=datetime.timezone.utc)
        if pb.HasField('publish_time') else None)
    self.ordering_key = pb.ordering_key


class _Received(object):
  __slots__ = ('ack_id', 'message')

  def __init__(self, pb):
    self.ack_id = pb.ack_id
    self.message = _Message(pb.message)


class _Pulled(object):
  """What Beam's reader reads of a PullResponse: received_messages."""
  __slots__ = ('received_messages',)

  def __init__(self, received_messages):
    self.received_messages = received_messages


class _WidePulls(object):
  """A subscriber client whose reads ask for PULL_MESSAGES messages, wait
  at most IDLE_WAIT_S for the first and FILL_S for the rest (_ReadAhead
  hands them to the DirectRunner's reader)."""

  def __init__(self, client):
    self._client = client

  def read(self, subscription):
    """The messages of one bundle: a pull, then follow-up pulls while a
    backlog lasts."""
    received = self._pull(subscription, PULL_MESSAGES, IDLE_WAIT_S)
    started = time.monotonic()
    while (received and len(received) < PULL_MESSAGES and
           time.monotonic() - started < FILL_S):
      more = self._pull(subscription, PULL_MESSAGES - len(received), FILL_S)
      if not more:
        break
      received.extend(more)
    return received

  def handed_over(self, subscription, received):
    """`received` as the reader's pull response, held by the ack ledger
    (local_acks) from now on where there is one."""
    ledger = local_acks.ledger()
    if ledger is not None and received:
      ledger.hold(self._client, subscription, received)
    return _Pulled(received)

  def acknowledge(self, subscription, ack_ids):
    """What the DirectRunner calls right after each pull: a no-op when the
    job's messages are acknowledged on their outcomes (local_acks)."""
    if local_acks.ledger() is None:
      self._client.acknowledge(subscription=subscription, ack_ids=ack_ids)

  def _pull(self, subscription, count, wait_s):
    from google.api_core import exceptions
    try:
      response = self._client.pull(subscription=subscription,
                                   max_messages=count, timeout=wait_s)
    except (exceptions.DeadlineExceeded, exceptions.RetryError):
      return []  # nothing within wait_s: read again later
    except exceptions.GoogleAPICallError as e:  # unreachable: an outage
      _LOG.warning('Pub/Sub pull failed (%s); reading again shortly', e)
      time.sleep(IDLE_WAIT_S)
      return []
    # pylint: disable-next=protected-access
    return [_Received(pb) for pb in response._pb.received_messages]

  def __getattr__(self, name):
    return getattr(self._client, name)


class _ReadAhead(object):
  """A _WidePulls read by a thread of its own, a bundle or two ahead of the
  runner: the DirectRunner reads and processes on one worker thread, which
  otherwise waits out every pull's round trips to Pub/Sub with its core
  idle. Each pull returns the oldest bundle read (waiting for one if none
  is); `read_at` is when that bundle was read, its source watermark (Beam's
  reader takes the wall clock right after its pull). A bundle read ahead is
  neither acknowledged nor held until it is returned, so what a job that
  stops had read ahead is delivered again by Pub/Sub."""

  def __init__(self, pulls):
    self._pulls = pulls
    self._read = queue.Queue(maxsize=1)  # (messages, wall clock read at)
    self._lock = threading.Lock()
    self._reader = None
    self.read_at = None

  def pull(self, subscription, max_messages, timeout):
    del max_messages, timeout  # the DirectRunner's 10 messages and 30 s
    with self._lock:
      if self._reader is None:
        stop = threading.Event()
        self._reader = threading.Thread(
            target=_read_ahead, args=(self._pulls.read, subscription,
                                      self._read, stop),
            name='pubsub-read-ahead', daemon=True)
        self._reader.start()
        weakref.finalize(self, stop.set)
      received, self.read_at = self._read.get()
      if isinstance(received, BaseException):
        self._reader = None  # it has ended: the next pull starts another
        raise received
      return self._pulls.handed_over(subscription, received)

  def acknowledge(self, subscription, ack_ids):
    self._pulls.acknowledge(subscription, ack_ids)


def _read_ahead(read, subscription, ready, stop):
  """_ReadAhead's thread: reads bundles into `ready` (one waits there at
  most) until `stop` is set or a read fails (its error is passed on)."""
  while not stop.is_set():
    try:
      item = read(subscription), time.time()
    except Exception as e:  # pylint: disable=broad-except  # the reader raises it
      item = e, None
    while not stop.is_set():
      try:
        ready.put(item, timeout=IDLE_WAIT_S)
        break
      except queue.Full:
        pass
    if isinstance(item[0], BaseException):
      return


def widen_pulls():
  """Installs the wider pull for DirectRunner pipelines of this process."""
  global _installed
  if _installed:
    return

  def find():
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
    base = transform_evaluator._PubSubReadEvaluator
    base._get_subscriber_client  # pylint: disable=pointless-statement
    return (base, _DirectReadFromPubSub, transform_evaluator
            .TransformEvaluatorRegistry._test_evaluators_overrides)
  found = _beam_internals(
      'Keeping the DirectRunner\'s 10-message Pub/Sub pulls', find)
  if found is None:
    return
  base, read_transform, overrides = found

  class _WidePullEvaluator(base):
    """Beam's Pub/Sub read evaluator, pulling PULL_MESSAGES at a time, a
    bundle ahead (_ReadAhead); the source watermark is the wall clock when
    the bundle was read."""
    _reads_ahead = weakref.WeakKeyDictionary()  # transform -> _ReadAhead
    _reads_ahead_lock = threading.Lock()

    @classmethod
    def _get_subscriber_client(cls, transform):
      client = super()._get_subscriber_client(transform)
      with cls._reads_ahead_lock:
        reads = cls._reads_ahead.get(transform)
        if reads is None:
          reads = cls._reads_ahead[transform] = _ReadAhead(_WidePulls(client))
      return reads

    def finish_bundle(self):
      result = super().finish_bundle()
      read_at = self._get_subscriber_client(self._applied_ptransform).read_at
      if read_at is not None:
        result.keyed_watermark_holds = {None: Timestamp.of(read_at)}
      return result

  overrides.setdefault(read_transform, _WidePullEvaluator)
  _installed = True


class _PublishFn(beam.DoFn):
  """Publishes a bundle's payloads (bytes) to `topic`, PUBLISH_MESSAGES (at
  most PUBLISH_BYTES) per Publish request, with the client's default retry
  policy; a request that still fails fails the bundle, as Beam's sink does."""

  def __init__(self, topic):
    self._topic = topic
    self._client = None
    self._pending = []
    self._pending_bytes = 0

  def setup(self):
    from google.cloud import pubsub_v1
    # The client reads the emulator's address (PUBSUB_EMULATOR_HOST) when
    # it is made: one client per process and address.
    self._client = load_once(
        ('pubsub-publisher', os.environ.get('PUBSUB_EMULATOR_HOST')),
        pubsub_v1.PublisherClient)

  def start_bundle(self):
    self._pending, self._pending_bytes = [], 0

  def process(self, data):
    if (len(self._pending) == PUBLISH_MESSAGES or
        self._pending_bytes + len(data) > PUBLISH_BYTES):
      self._publish()
    self._pending.append(data)
    self._pending_bytes += len(data)

  def finish_bundle(self):
    self._publish()

  def _publish(self):
    if not self._pending:
      return
    from google.api_core import exceptions
    from google.pubsub_v1 import PubsubMessage
    from google.pubsub_v1.services.publisher.client import PublisherClient
    message = PubsubMessage.pb()  # the protobuf class: no wrapper per message
    messages = [message(data=d) for d in self._pending]
    deadline = time.monotonic() + PUBLISH_DEADLINE_S
    backoff = 0.5
    while True:
      try:
        # The generated (GAPIC) Publish call of the same client: one request
        # for all of them, where the client's publish() batches one message
        # at a time.
        PublisherClient.publish(self._client, topic=self._topic,
                                messages=messages, timeout=PUBLISH_TIMEOUT_S)
        break
      except exceptions.GoogleAPIError as e:
        if time.monotonic() + backoff > deadline:
          raise
        _LOG.warning('Publishing to %s failed (%s); retrying in %.1f s',
                     self._topic, e, backoff)
        time.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
    ledger = local_acks.ledger()
    if ledger is not None:
      ledger.settle(self._pending)
    self._pending, self._pending_bytes = [], 0


class _PublishPerBundle(beam.PTransform):
  """bytes -> the Pub/Sub topic, through _PublishFn."""

  def __init__(self, topic):
    super().__init__()
    self._topic = topic

  def expand(self, payloads):
    return payloads | beam.ParDo(_PublishFn(self._topic))


class _WriteOverride(PTransformOverride):
  """WriteToPubSub of plain payloads -> _PublishPerBundle. Writes with
  attributes, ordering keys, id or timestamp attributes keep Beam's sink."""

  def matches(self, applied_ptransform):
    t = applied_ptransform.transform
    return (isinstance(t, beam.io.WriteToPubSub) and not t.with_attributes
            and not t.publish_with_ordering_key and not t.id_label
            and not t.timestamp_attribute)

  def get_replacement_transform_for_applied_ptransform(self,
                                                       applied_ptransform):
    return _PublishPerBundle(applied_ptransform.transform.full_topic)


def publish_per_bundle(pipeline):
  """Replaces `pipeline`'s plain WriteToPubSub sinks with _PublishPerBundle;
  call it on local runs only, after the graph is built."""
  pipeline.replace_all([_WriteOverride()])
