"""The two-phase cascade: a cheap model decides what it can, a large one the rest.

(key, record) -> phase 1 (every record, batched) -> the forwarding rule ->
  decided by phase 1                      -> a decision record
  forwarded -> phase 2 (batched)          -> a decision record
            -> phase 2 unavailable/failed -> a pending record
Phase-1 failures are dead letters (the record itself could not be scored).
Phase-2 failures are NOT dead letters: the record is fine and phase 1 has
scored it; phase 2 is offline or broken, so the record waits in `pending` and
can be replayed through phase 2 alone later (the book's "store while offline,
send when connected"). For every run: inputs = decisions + pending + dead
letters.

Records move through both phases in chunks (transforms.record_chunks: one
Beam element per model batch, the rules applied record by record), as in
batch serving: Beam's per-element cost is paid once per batch, and with
`threads` each model's calls overlap the Python steps around them
(transforms.inference.chunked).

Decision record (key first):
  {"key", "phase1_score", "phase2_score" (null unless forwarded), "decision",
   "decided_by": "phase1"|"phase2", "phase1_model", "phase2_model" (null unless
   decided by phase 2), "decided_at" (ISO-8601 UTC)}
Pending record (replayable as-is: `FromPending`, chunked, then `Phase2`):
  {"key", "phase1_score", "phase1_model", "reason", "error"?, "pending_since",
   "record": <the complete original record>}
"""
import datetime
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.inference.chunked import RunChunkInference
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject
from transforms.two_phase.forwarding import phase2_decision
from transforms.inference.signature_handler import InferenceFailure
from transforms.record_chunks import Rechunk

NAMESPACE = 'two_phase'
FORWARDED = 'forwarded'
PENDING = 'pending'
PHASE1, PHASE2 = 'phase1', 'phase2'
PHASE2_FAILED = 'phase2_failed'
PHASE2_UNAVAILABLE = 'phase2_unavailable'
# While a record travels from phase 1 to phase 2 its phase-1 result rides in
# this field (phase 2's model handler reads the record's own text field).
# It never reaches an output: decisions and pending records take it out.
_CARRIED = '_two_phase'


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat()


def decision_record(key, phase1_score, phase1_model, decision, decided_by,
                    decided_at, phase2_score=None, phase2_model=None):
  return {'key': key, 'phase1_score': phase1_score,
          'phase2_score': phase2_score, 'decision': decision,
          'decided_by': decided_by, 'phase1_model': phase1_model,
          'phase2_model': phase2_model, 'decided_at': decided_at}


def pending_record(key, carried, record, reason, error=None):
  out = {'key': key, 'phase1_score': carried['phase1_score'],
         'phase1_model': carried['phase1_model'], 'reason': reason,
         'pending_since': _now(), 'record': record}
  if error:
    out['error'] = str(error)
  return out


def _split_carried(record):
  record = dict(record)
  return record.pop(_CARRIED), record


def _batch_size(handler):
  """The largest batch `handler` asks RunInference for, or None."""
  return handler.batch_elements_kwargs().get('max_batch_size')


class Cascaded(typing.NamedTuple):
  """A cascade's three outputs; inputs = decisions + pending + dead letters.

  `decisions` holds chunks of decision records; `pending` and
  `dead_letter` hold records (they are the exceptions).
  """
  decisions: beam.PCollection
  pending: beam.PCollection
  dead_letter: beam.PCollection


class _RouteByPhase1(beam.DoFn):
  """A chunk of (key, phase-1 PredictionResult) -> a chunk of decisions,
  a chunk of forwarded (key, record) on FORWARDED, dead letters."""

  def __init__(self, rule):
    self._rule = rule
    self._decided = Metrics.counter(NAMESPACE, 'decided_by_phase1')
    self._forwarded = Metrics.counter(NAMESPACE, 'forwarded')

  def process(self, chunk):
    decided, forwarded, now = [], [], _now()
    for key, result in chunk:
      if isinstance(result.inference, InferenceFailure):
        yield reject(key, PHASE1, 'phase1_failed', result.example,
                     result.inference.error)
        continue
      score = result.inference
      decision = self._rule.phase1_decision(score)
      if decision is not None:
        decided.append(decision_record(key, score, result.model_id, decision,
                                       PHASE1, now))
        continue
      carried = {'phase1_score': score, 'phase1_model': result.model_id}
      forwarded.append((key, {**result.example, _CARRIED: carried}))
    if decided:
      self._decided.inc(len(decided))
      yield decided
    if forwarded:
      self._forwarded.inc(len(forwarded))
      yield beam.pvalue.TaggedOutput(FORWARDED, forwarded)


class _DecideByPhase2(beam.DoFn):
  """A chunk of (key, phase-2 PredictionResult) -> a chunk of decisions;
  records phase 2 failed on -> pending records on PENDING."""

  def __init__(self, output_name):
    self._output = output_name
    self._decided = Metrics.counter(NAMESPACE, 'decided_by_phase2')
    self._pending = Metrics.counter(NAMESPACE, 'pending')

  def process(self, chunk):
    decided, now = [], _now()
    for key, result in chunk:
      carried, record = _split_carried(result.example)
      outputs = result.inference
      if isinstance(outputs, InferenceFailure) or self._output not in outputs:
        error = (outputs.error if isinstance(outputs, InferenceFailure) else
                 f'phase 2 has no output {self._output!r}; it returned '
                 f'{sorted(outputs)}')
        self._pending.inc()
        yield beam.pvalue.TaggedOutput(
            PENDING, pending_record(key, carried, record, PHASE2_FAILED, error))
        continue
      score = float(outputs[self._output])
      decided.append(decision_record(
          key, carried['phase1_score'], carried['phase1_model'],
          phase2_decision(score), PHASE2, now, score, result.model_id))
    if decided:
      self._decided.inc(len(decided))
      yield decided


class _Pend(beam.DoFn):
  """Phase 2 is offline: every forwarded record waits in pending."""

  def __init__(self, reason, error):
    self._reason, self._error = reason, error
    self._pending = Metrics.counter(NAMESPACE, 'pending')

  def process(self, chunk):
    for key, flat in chunk:
      carried, record = _split_carried(flat)
      self._pending.inc()
      yield pending_record(key, carried, record, self._reason, self._error)


class Phase2(beam.PTransform):
  """Chunks of forwarded (key, record) -> Cascaded (no dead letters:
  failures pend).

  The chunks are gathered into phase-2 batches first (phase 1 forwards a
  fraction of each of its batches).

  Args:
    handler: a ModelHandler for phase 2 (e.g. transforms.inference.signature_handler's
      SignatureModelHandler), or None when phase 2 is unavailable.
    output_name: the phase-2 output holding the positive probability.
    unavailable_error: why phase 2 is unavailable (when handler is None).
    threads: phase-2 calls in flight at once per process (RunChunkInference).
  """

  def __init__(self, handler, output_name, unavailable_error=None, threads=0):
    super().__init__()
    self._handler = handler
    self._output = output_name
    self._unavailable_error = unavailable_error
    self._threads = threads

  def expand(self, forwarded):
    empty = forwarded.pipeline | 'No dead letters' >> beam.Create([])
    if self._handler is None:
      pending = forwarded | 'Pend' >> beam.ParDo(
          _Pend(PHASE2_UNAVAILABLE, self._unavailable_error))
      decisions = forwarded.pipeline | 'No decisions' >> beam.Create([])
      return Cascaded(decisions, pending, empty)
    size = _batch_size(self._handler)
    if size:
      forwarded = forwarded | 'Batches' >> Rechunk(size)
    outputs = (
        forwarded
        | 'RunInference phase 2' >> RunChunkInference(
            self._handler, self._threads)
        | 'Decide' >> beam.ParDo(_DecideByPhase2(self._output)).with_outputs(
            PENDING, main='decisions'))
    return Cascaded(outputs.decisions, outputs[PENDING], empty)


class TwoPhaseCascadeChunks(beam.PTransform):
  """Chunks of (key, record), each one phase-1 batch -> Cascaded (decision
  chunks), scoring every record with phase 1.

  Chunks move through both phases as one element each (the batch path of
  transforms.record_chunks); the rules apply record by record.

  Args:
    phase1_handler: a ModelHandler returning a positive probability per
      record (transforms.inference.tflite_handler.TFLiteTextModelHandler).
    rule: a transforms.two_phase.forwarding.ForwardRule.
    phase2: a `Phase2` transform for the forwarded chunks.
    threads: phase-1 calls in flight at once per process.
  """

  def __init__(self, phase1_handler, rule, phase2, threads=0):
    super().__init__()
    self._phase1 = phase1_handler
    self._rule = rule
    self._phase2 = phase2
    self._threads = threads

  def expand(self, chunks):
    routed = (
        chunks
        | 'RunInference phase 1' >> RunChunkInference(
            self._phase1, self._threads)
        | 'Route' >> beam.ParDo(_RouteByPhase1(self._rule)).with_outputs(
            FORWARDED, DEAD_LETTER, main='decisions'))
    second = routed[FORWARDED] | 'Phase 2' >> self._phase2
    decisions = ((routed.decisions, second.decisions)
                 | 'All decisions' >> beam.Flatten())
    return Cascaded(decisions, second.pending, routed[DEAD_LETTER])


@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _FromPending(beam.DoFn):
  """A pending record -> (key, record carrying its phase-1 result)."""

  _FIELDS = ('key', 'phase1_score', 'phase1_model', 'record')

  def process(self, pending):
    missing = [f for f in self._FIELDS if f not in pending]
    if missing or not isinstance(pending.get('record'), dict):
      yield reject(pending.get('key'), 'replay', 'not_a_pending_record',
                   pending, f'missing or malformed: {missing or ["record"]}')
      return
    carried = {'phase1_score': pending['phase1_score'],
               'phase1_model': pending['phase1_model']}
    yield str(pending['key']), {**pending['record'], _CARRIED: carried}


class FromPending(beam.PTransform):
  """Pending records (as a cascade wrote them) -> forwarded (key, record).

  Feed the result to `Phase2` to replay them through phase 2 alone. Phase 1 is
  not run again: its recorded score and model travel on into the decision
  records, so a replayed decision looks exactly like one made by a run during
  which phase 2 was up. Returns `Routed`; malformed lines are dead letters.
  """

  def expand(self, pending):
    return pending | RoutedParDo(_FromPending())
