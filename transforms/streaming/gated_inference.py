"""Streaming inference with gated model refresh: a new version predicts in
shadow beside the live one until the gate (transforms.streaming.gate)
promotes or rejects it, without a restart.

Why not RunInference's model updates (WatchFilePattern -> ModelMetadata as
`model_metadata_pcoll`): RunInference swaps to the newest file the moment
the side input changes, one model at a time. A gate needs two models
loaded together, both called on every batch, figures kept between batches,
and the freedom to keep the old model when the new one fails, none of
which that side input can express; and a rejected version would still be
the side input's newest, swapped back in. So this DoFn holds the versions
itself and lists the watched pattern as WatchFilePattern would
(transforms.streaming.model_watch); the model work is still the batch job's
SignatureModelHandler (load_model, run_inference: failures isolated per
record), and batches are Beam's BatchElements (its stateful path: full, or
after the wait bound).

The gate's state lives once per worker process (common.process_cache), so
every DoFn instance and thread of a process shares one live version, one
shadow and one tally, and each process decides from the messages it saw:
on Dataflow, each worker promotes or rejects on its own (docs/
streaming_predict.md). Each batch is predicted by exactly one live version:
a promotion takes effect between batches.

Labels (GateConfig.labels) join in the same process state: a DoFn reading
(key, class) hands each label to the process's gate, whose tally holds the
pair of decisions of every counted message until its label or the shadow's
decision (gate.GateTally). A label whose key holds no pair (never shadowed,
shadowed before the tally started or by another worker, or labelled after
the decision) is counted as unmatched and dropped.
"""
import dataclasses
import datetime
import logging
import os
import socket
import threading
import time
import typing
import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.config_error import ConfigError
from common.process_cache import load_once
from common.records import model_event
from common.records.prediction_log import SHADOW as SHADOW_ROLE
from transforms.inference.predictions import log_entry
from transforms.inference.signature_handler import InferenceFailure
from transforms.streaming import model_watch
from transforms.streaming.gate import GateRule
from transforms.streaming.gate import GateTally
from transforms.streaming.labels import Classes
from transforms.streaming.predict import FormatPredictions

SHADOW = 'shadow'
EVENTS = 'events'
METRICS_NAMESPACE = 'model_gate'
_LOG = logging.getLogger(__name__)


class CandidateRejected(Exception):
  """A new version that cannot serve: the message says why."""


def signature_mismatch(live, candidate):
  """Why `candidate`'s signature cannot replace `live`'s (both
  models.runtime.signatures.Signature), or None."""
  problems = []
  for kind, a, b in (('input', live.inputs, candidate.inputs),
                     ('output', live.outputs, candidate.outputs)):
    for name in sorted(set(a) | set(b)):
      if name not in b:
        problems.append(f'no {kind} {name!r}')
      elif name not in a:
        problems.append(f'an extra {kind} {name!r}')
      elif a[name].dtype != b[name].dtype:
        problems.append(f'{kind} {name!r} is {b[name].describe()}, live\'s '
                        f'{a[name].describe()}')
  return '; '.join(problems) or None


def _first_line(e):
  lines = str(e).strip().splitlines()
  return f'{type(e).__name__}: {lines[0] if lines else ""}'[:500]


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclasses.dataclass(frozen=True)
class GateConfig:
  """watch_pattern: where new versions appear (model_watch).
  signature: the live version's models.runtime.signatures.Signature; a
    candidate must have the same inputs and outputs.
  model_name: the model's name on the events.
  poll_interval_s: how often a process lists the pattern (while it has
    messages to predict).
  gate_id: names the job's gate state in each process.
  labels: a transforms.streaming.labels.LabelConfig when labels feed the
    gate's accuracy, else None."""
  watch_pattern: str
  rule: GateRule
  signature: typing.Any
  model_name: str | None = None
  poll_interval_s: float = 10.0
  gate_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
  labels: typing.Any = None

  def __post_init__(self):
    if self.poll_interval_s < 0:
      raise ConfigError('watch_interval', 'must not be negative')
    if self.rule.decision_output is None:
      first = sorted(self.signature.outputs)[0]
      object.__setattr__(self, 'rule', dataclasses.replace(
          self.rule, decision_output=first))


class _Version(typing.NamedTuple):
  handler: typing.Any
  model: typing.Any

  @property
  def name(self):
    return self.handler.model_version


class GateState:
  """One process's live version, shadow and tally (see the module doc)."""

  def __init__(self, config, live_handler, clock=time.monotonic):
    self._config = config
    self._clock = clock
    self._lock = threading.Lock()
    # Loaded at the first batch: this object is made inside
    # common.process_cache.load_once, whose lock the model's load takes too.
    self._live_handler = live_handler
    self.live = None
    self.shadow = None
    self._tally = None
    self._seen = {live_handler.model_dir.rstrip('/')}
    self._next_poll = clock()
    self._worker = f'{socket.gethostname()}:{os.getpid()}'
    self._events = Metrics.counter(METRICS_NAMESPACE, 'events')

  def step(self, records, keys=None):
    """Predicts `records` (a batch, keyed by `keys` for the labels) with the
    live version and any shadow; returns (live results, shadow results or
    None, event records)."""
    events = []
    with self._lock:
      if self.live is None:
        self.live = _Version(self._live_handler,
                             self._live_handler.load_model())
      if self._clock() >= self._next_poll:
        self._next_poll = self._clock() + self._config.poll_interval_s
        events += self._poll()
      live, shadow = self.live, self.shadow
    started = time.perf_counter()
    live_results = live.handler.run_inference(records, live.model)
    live_s = time.perf_counter() - started
    if shadow is None:
      return live_results, None, events
    started = time.perf_counter()
    try:
      shadow_results = shadow.handler.run_inference(records, shadow.model)
    except Exception as e:  # pylint: disable=broad-except  # never live's
      failure = InferenceFailure(_first_line(e))
      shadow_results = [r._replace(inference=failure) for r in live_results]
    shadow_s = time.perf_counter() - started
    with self._lock:
      if self.shadow is shadow and self._tally is None:
        # A model's first call traces its graph (tens of times a warm
        # call): the gate starts counting from the shadow's second batch.
        labels = self._config.labels
        self._tally = GateTally(self._config.rule,
                                self._config.rule.decision_output,
                                None if labels is None else Classes(labels))
      elif self.shadow is shadow:
        self._tally.add([r.inference for r in live_results],
                        [r.inference for r in shadow_results], live_s,
                        shadow_s, keys)
        decided = self._tally.decide()
        if decided is not None:
          events.append(self._decide(*decided))
    return live_results, shadow_results, events

  def label(self, key, label):
    """Counts a label (a class) for `key` in the shadow's tally; False when
    no counted message of the shadow waits for it."""
    with self._lock:
      return self._tally is not None and self._tally.label(key, label)

  def _poll(self):
    folder = model_watch.newest_candidate(
        self._config.watch_pattern, self.live.handler.model_dir, self._seen)
    if folder is None or (self.shadow is not None and
                          model_watch.version_order(folder) <=
                          model_watch.version_order(
                              self.shadow.handler.model_dir)):
      return []
    self._seen.add(folder.rstrip('/'))
    events = []
    if self.shadow is not None:  # a newer one replaces the shadow
      events.append(self._event(self.shadow.name, model_event.REJECTED,
                                f'superseded by {folder}'))
      self.shadow = None
    try:
      candidate = self._load(folder)
    except Exception as e:  # pylint: disable=broad-except  # never crash
      from models.runtime import signatures as sigs
      events.append(self._event(sigs.default_model_version(folder),
                                model_event.REJECTED, _first_line(e)))
      return events
    self.shadow = candidate
    self._tally = None  # from its second batch: see step()
    events.append(self._event(candidate.name, model_event.SHADOW,
                              f'loaded from {folder}'))
    return events

  def _load(self, folder):
    from models.runtime import model_files
    from models.runtime import signatures as sigs
    live_signature = self._config.signature
    signature = sigs.get_signature(folder, live_signature.name)
    problem = signature_mismatch(live_signature, signature)
    if problem:
      raise CandidateRejected(f'signature {live_signature.name!r} does not '
                              f'match the live version\'s: {problem}')
    fingerprint = model_files.verify(sigs.resolve_model_dir(folder))
    handler = self.live.handler.for_version(
        folder, sigs.default_model_version(folder), fingerprint)
    return _Version(handler, handler.load_model())

  def _decide(self, promoted, reason):
    shadow = self.shadow
    event = self._event(
        shadow.name, model_event.PROMOTED if promoted else model_event.REJECTED,
        reason, self._tally.figures())
    if promoted:
      self.live = shadow
    self.shadow, self._tally = None, None
    return event

  def _event(self, version, event, reason, figures=None):
    self._events.inc()
    Metrics.counter(METRICS_NAMESPACE, event).inc()
    _LOG.info('Model %s %s: %s', version, event, reason)
    return model_event.record(self._config.model_name, version, event,
                              self.live.name, reason, figures, _now(),
                              self._worker)


def _process_gate(config, handler):
  return load_once(('stream-gate', config.gate_id),
                   lambda: GateState(config, handler))


class _JoinLabels(beam.DoFn):
  """(key, class) -> nothing: the label counts in this process's gate."""

  def __init__(self, config, handler):
    self._config, self._handler = config, handler
    self._state = None
    self._joined = Metrics.counter(METRICS_NAMESPACE, 'labels_joined')
    self._unmatched = Metrics.counter(METRICS_NAMESPACE, 'labels_unmatched')

  def setup(self):
    self._state = _process_gate(self._config, self._handler)

  def process(self, element):
    key, label = element
    if self._state.label(key, label):
      self._joined.inc()
    else:
      self._unmatched.inc()
    return ()


class _GatedInference(beam.DoFn):
  """A batch of (key, record) -> (key, PredictionResult) of the live
  version; SHADOW: (key, PredictionResult) of the shadow; EVENTS: model
  event records."""

  def __init__(self, config, handler):
    self._config, self._handler = config, handler
    self._state = None

  def setup(self):
    self._state = _process_gate(self._config, self._handler)

  def process(self, batch):
    batch_keys = [key for key, _ in batch]
    live, shadow, events = self._state.step([record for _, record in batch],
                                            batch_keys)
    for key, result in zip(batch_keys, live):
      yield key, result
    for key, result in zip(batch_keys, shadow or ()):
      yield beam.pvalue.TaggedOutput(SHADOW, (key, result))
    for event in events:
      yield beam.pvalue.TaggedOutput(EVENTS, event)


def _shadow_log(element, model_name, input_fields):
  key, result = element
  if isinstance(result.inference, InferenceFailure):
    return []
  entry = log_entry(result, model_name, input_fields, _now())
  entry['role'] = SHADOW_ROLE
  return [[(key, entry)]]


class GatedPredictStream(beam.PTransform):
  """(key, record) -> {'predictions', 'dead_letter', 'log', 'events'}: as
  transforms.streaming.predict.PredictStream, with the versions under
  `config.watch_pattern` gated in (see the module doc). The shadow's
  predictions go only to the prediction log (when `log_model_name` is
  given), tagged shadow. `labels`: a PCollection of (key, class) (see
  transforms.streaming.labels) when `config.labels` is given."""

  def __init__(self, handler, config, batch_size, max_wait_s,
               passthrough_fields=(), log_model_name=None, input_fields=None,
               labels=None):
    super().__init__()
    if (labels is None) != (config.labels is None):
      raise ValueError('labels and config.labels go together')
    self._labels = labels
    self._handler, self._config = handler, config
    self._batch_size, self._max_wait_s = batch_size, max_wait_s
    self._log_model = log_model_name
    self._input_fields = tuple((input_fields or {}).items())
    self._format = FormatPredictions(passthrough_fields, log_model_name,
                                     input_fields)

  def expand(self, keyed):
    batches = keyed | 'Batch' >> beam.BatchElements(
        min_batch_size=self._batch_size, max_batch_size=self._batch_size,
        max_batch_duration_secs=self._max_wait_s)
    inferred = batches | 'Gated inference' >> beam.ParDo(
        _GatedInference(self._config, self._handler)).with_outputs(
            SHADOW, EVENTS, main='live')
    if self._labels is not None:
      _ = self._labels | 'Join labels' >> beam.ParDo(
          _JoinLabels(self._config, self._handler))
    formatted = inferred.live | 'Format' >> self._format
    log = formatted['log']
    if self._log_model:
      shadow_log = inferred[SHADOW] | 'Shadow log' >> beam.FlatMap(
          _shadow_log, self._log_model, self._input_fields)
      log = (log, shadow_log) | 'All log entries' >> beam.Flatten()
    return dict(formatted, log=log, events=inferred[EVENTS])
