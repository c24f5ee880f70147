"""The moderation rule: one mention of a person per commenter per rolling day.

The contract (pinned by tests): for each commenter and each canonical entity E,
a comment at event time t that mentions E is REJECTED if the same commenter has
an ALLOWED comment mentioning E with event time in (t - window, t] before it;
otherwise it is allowed. A comment mentioning several entities is rejected if
any of them is blocked; only an allowed comment opens windows, for all of its
entities. Comments are ordered by (event time, comment_id).

`decide` is that rule, a pure function over a small per-commenter history.
`ModerateComments` runs it inside a stateful DoFn keyed by commenter_id: in
streaming it buffers comments and decides them in event-time order once the
watermark has passed them by the allowed lateness (event-time timers), so the
decisions never depend on arrival order and equal those of a sorted batch
replay, which runs the very same DoFn over files.
"""
import apache_beam as beam
import orjson
from apache_beam.coders import PickleCoder
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from common.config_error import ConfigError
from common.records import decision as decision_records
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject

STAGE = 'moderate'
METRICS_NAMESPACE = 'moderation'
ALLOW = decision_records.ALLOW
REJECT = decision_records.REJECT
HOUR_MICROS = 3600 * 1_000_000


def _as_json(comment):
  """The comment as JSON text: what the rule buffers in state.

  Text, not orjson's bytes: each bytes object orjson returns keeps its
  4 KB output buffer, and the SDK's state cache, which weighs entries by
  their reported size, then holds several times what it counted
  (benchmarks/optimisations.md).
  """
  return orjson.dumps(comment).decode()


def tracked_ids(comment):
  """The distinct canonical ids a comment mentions, in mention order.

  Entities without a canonical id (the Cloud NL backend's '' for an entity
  it cannot link) cannot be recognised again, so they never count.
  """
  seen = []
  for entity in comment.get('entities', ()):
    eid = entity.get('canonical_id')
    if eid and eid not in seen:
      seen.append(eid)
  return seen


def decide(comment, t_micros, history, window_micros):
  """Decides one comment and records it in `history` if it is allowed.

  `history` maps canonical id -> (event time micros, comment_id, timestamp) of
  the latest ALLOWED comment of this commenter mentioning it. Callers must
  present a commenter's comments in (event time, comment_id) order; then only
  the latest allowed mention per entity matters.

  Returns the decision record written to the output.
  """
  ids = tracked_ids(comment)
  blocked_by, reasons = [], []
  for eid in ids:
    previous = history.get(eid)
    if previous is not None and t_micros - window_micros < previous[0] <= t_micros:
      blocked_by.append(eid)
      reasons.append(
          f'{eid} already in allowed comment {previous[1]} at {previous[2]}')
  hours = window_micros / HOUR_MICROS
  if blocked_by:
    decision = REJECT
    reason = f'mentioned within {hours:g}h: ' + '; '.join(reasons)
  else:
    decision = ALLOW
    reason = (f'no entity mentioned in an allowed comment within {hours:g}h'
              if ids else 'no tracked entities')
    for eid in ids:
      history[eid] = (t_micros, comment['comment_id'], comment['timestamp'])
  return decision_records.record(comment, decision, blocked_by, reason)


class _Ledger(object):
  """What a commenter's key remembers between flushes; read and written by
  the flushes only (a comment arriving reads the key's horizon alone).

  history: canonical id -> (t micros, comment_id, timestamp) of the latest
    allowed mention (only mentions inside the window can matter);
  decided: comment_id -> t micros of decided comments (duplicate detection).
  """
  __slots__ = ('history', 'decided')

  def __init__(self):
    self.history = {}
    self.decided = {}

  def prune(self, before_micros):
    """Forgets entries at or before `before_micros`: they can never matter."""
    self.history = {
        k: v for k, v in self.history.items() if v[0] > before_micros}
    self.decided = {
        k: v for k, v in self.decided.items() if v > before_micros}

  def newest(self):
    times = [v[0] for v in self.history.values()]
    times.extend(self.decided.values())
    return max(times) if times else None

  def __getstate__(self):
    return (self.history, self.decided)

  def __setstate__(self, state):
    self.history, self.decided = state


# Buffered comments are (event time micros, comment_id, the comment as JSON
# text, `_as_json`): the SDK's state cache weighs what it holds by walking
# every object in it, and one string is one object where the comment dict is
# dozens.
BUFFER = BagStateSpec('buffer', PickleCoder())
LEDGER = ReadModifyWriteStateSpec('ledger', PickleCoder())
HORIZON = ReadModifyWriteStateSpec('horizon', VarIntCoder())
TIMER_AT = ReadModifyWriteStateSpec('timer_at', VarIntCoder())
TICK = TimerSpec('tick', TimeDomain.WATERMARK)
END = TimerSpec('end', TimeDomain.WATERMARK)  # bounded input: one flush


class _Decider(beam.DoFn):
  """What both forms of the rule's DoFn share: deciding buffered comments
  in order, counted as allowed or rejected.

  Counted where decided. The DirectRunner loses metrics of timer callbacks
  and of everything downstream of their output, so the counts are exact on
  the FnApiRunner (batch replay) and Dataflow only.
  """

  def __init__(self, window_micros):
    self._window = window_micros
    self._allowed = Metrics.counter(METRICS_NAMESPACE, 'allowed')
    self._rejected = Metrics.counter(METRICS_NAMESPACE, 'rejected')

  def _decide(self, comment, t_micros, history):
    """`decide`, counted as allowed or rejected."""
    decision = decide(comment, t_micros, history, self._window)
    (self._allowed if decision['decision'] == ALLOW else self._rejected).inc()
    return decision

  def _decide_in_order(self, buffered, decided, history):
    """Decides buffered (t micros, comment_id, JSON) entries in the order
    given; a comment_id already in `decided` (comment_id -> t micros, which
    this updates) is a duplicate dead letter."""
    for t_micros, comment_id, payload in buffered:
      comment = orjson.loads(payload)
      if comment_id in decided:
        yield _duplicate(comment)
        continue
      decided[comment_id] = t_micros
      yield self._decide(comment, t_micros, history)


class _DecideBounded(_Decider):
  """Bounded input (batch replay): (commenter_id, comment) -> decisions.

  The watermark jumps to the end at once, so a key's comments are all
  buffered and decided in one flush at the end of the global window, in
  (event time, comment_id) order, the first copy of a comment_id decided
  and later copies dead letters, as in a sorted replay. Nothing can be
  late, and nothing but the buffer is kept per key.
  """

  def start_bundle(self):
    self._timers_set = set()

  def process(self, element, t=beam.DoFn.TimestampParam,
              buffer=beam.DoFn.StateParam(BUFFER),
              end=beam.DoFn.TimerParam(END)):
    commenter_id, comment = element
    buffer.add((t.micros, comment['comment_id'], _as_json(comment)))
    if commenter_id not in self._timers_set:
      self._timers_set.add(commenter_id)
      end.set(GlobalWindow().max_timestamp())

  @on_timer(END)
  def on_end(self, buffer=beam.DoFn.StateParam(BUFFER)):
    yield from self._decide_in_order(sorted(buffer.read()), {}, {})
    buffer.clear()


class _DecideInEventTimeOrder(_Decider):
  """Streaming: (commenter_id, comment) -> decision | dead letter (late,
  duplicate).

  Each comment is buffered; one event-time timer per key fires when the
  watermark passes (earliest buffered time + allowed lateness) and decides,
  in (event time, comment_id) order, every buffered comment at or before
  (fire time - allowed lateness). After a flush nothing earlier can be
  accepted any more: a comment at or before the key's horizon is `late`.

  Duplicates are found by the flushes too (the first copy in that order is
  decided, as in a sorted replay; a later copy, buffered with it or arriving
  after its decision, is a dead letter), so an arriving comment reads only
  the key's horizon and timer (two integers), not the ledger of its decided
  comments, which grows with the commenter's activity in the window; only a
  comment already behind the horizon reads it, to tell a redelivered
  duplicate from a late comment.

  When the buffer is empty the same timer is set to the moment the newest
  remembered mention leaves the window (plus the lateness), and that flush
  prunes the ledger; a key with nothing left is cleared entirely, so state
  stays bounded on an unbounded stream. Once a key is cleared its horizon is
  gone, so each DoFn instance also keeps the latest timer fire time it has
  seen: the watermark is at least that, so a comment more than the allowed
  lateness behind it is late too.

  Timers fire on a grid of `interval` (event time rounded up to the next
  multiple): a commenter's comments that become ready within one interval
  are decided in one firing instead of one per distinct event time. Each
  firing reads and writes the key's state and is a bundle on the runner, so
  on a busy stream this cuts the runner's work several-fold; decisions come
  at most one interval later and are the same.
  """

  def __init__(self, window_micros, lateness_micros, interval_micros=0):
    super().__init__(window_micros)
    self._lateness = lateness_micros
    self._interval = interval_micros
    self._floor = None

  def setup(self):
    self._floor = None

  def process(
      self,
      element,
      t=beam.DoFn.TimestampParam,
      buffer=beam.DoFn.StateParam(BUFFER),
      ledger_state=beam.DoFn.StateParam(LEDGER),
      horizon=beam.DoFn.StateParam(HORIZON),
      timer_at=beam.DoFn.StateParam(TIMER_AT),
      tick=beam.DoFn.TimerParam(TICK)):
    _, comment = element
    t_micros = t.micros
    if self._is_late(t_micros, horizon.read()):
      yield self._late(comment, ledger_state.read())
      return
    buffer.add((t_micros, comment['comment_id'], _as_json(comment)))
    fire = self._fire_time(t_micros + self._lateness)
    current = timer_at.read()
    if current is None or fire < current:
      timer_at.write(fire)
      tick.set(Timestamp(micros=fire))

  def _late(self, comment, ledger):
    """The dead letter of a comment behind its key's horizon: a
    redelivery of a decided comment is a duplicate, anything else late."""
    if ledger is not None and comment['comment_id'] in ledger.decided:
      return _duplicate(comment)
    return reject(
        comment['comment_id'], STAGE, 'late', comment['raw'],
        f'event time {comment["timestamp"]} arrived after its commenter\'s '
        'decisions for that time were made (beyond the allowed lateness)')

  def _fire_time(self, micros):
    """`micros` rounded up to the decision grid."""
    if self._interval <= 1:
      return micros
    return -(-micros // self._interval) * self._interval

  def _is_late(self, t_micros, horizon):
    if horizon is not None and t_micros <= horizon:
      return True
    return self._floor is not None and t_micros + self._lateness < self._floor

  @on_timer(TICK)
  def on_tick(
      self,
      fire=beam.DoFn.TimestampParam,
      buffer=beam.DoFn.StateParam(BUFFER),
      ledger_state=beam.DoFn.StateParam(LEDGER),
      horizon_state=beam.DoFn.StateParam(HORIZON),
      timer_at=beam.DoFn.StateParam(TIMER_AT),
      tick=beam.DoFn.TimerParam(TICK)):
    fire_micros = fire.micros
    if self._floor is None or fire_micros > self._floor:
      self._floor = fire_micros
    ledger = ledger_state.read() or _Ledger()
    pending = list(buffer.read())
    cutoff = fire_micros - self._lateness
    ready = sorted((p for p in pending if p[0] <= cutoff),
                   key=lambda p: (p[0], p[1]))  # stable: arrival in ties
    rest = [p for p in pending if p[0] > cutoff]
    yield from self._decide_in_order(ready, ledger.decided, ledger.history)
    buffer.clear()
    timer_at.clear()
    for p in rest:
      buffer.add(p)
    horizon = horizon_state.read()
    horizon = cutoff if horizon is None else max(horizon, cutoff)
    next_fire = self._next_fire(ledger, horizon, rest)
    if next_fire is None:
      ledger_state.clear()
      horizon_state.clear()
      return
    ledger_state.write(ledger)
    horizon_state.write(horizon)
    timer_at.write(next_fire)
    tick.set(Timestamp(micros=next_fire))

  def _next_fire(self, ledger, horizon, rest):
    """When the key's timer fires next (None: the key holds nothing more).

    Comments accepted from now on are later than the horizon, so nothing at
    or before (horizon - window) can block or duplicate them any more: the
    ledger forgets it.
    """
    ledger.prune(horizon - self._window)
    if rest:
      return self._fire_time(min(p[0] for p in rest) + self._lateness)
    newest = ledger.newest()
    if newest is None:
      return None
    return self._fire_time(newest + self._window + self._lateness)


def _duplicate(comment):
  return reject(comment['comment_id'], STAGE, 'duplicate', comment['raw'],
                'comment_id already received')


class ModerateComments(beam.PTransform):
  """(commenter_id, comment with `entities`) -> decisions + dead letters.

  Returns a DoOutputsTuple with `decisions` and `dead_letter`. `bounded` says
  whether the input is a bounded (batch replay) PCollection; the rule and the
  decisions are the same either way. Streaming decisions are made on a grid
  of `decision_interval_seconds` of event time (0: at each comment's own
  time plus the lateness); see _DecideInEventTimeOrder (streaming) and
  _DecideBounded (batch replay).
  """

  def __init__(self, window_hours=24, allowed_lateness_seconds=0,
               bounded=False, decision_interval_seconds=1.0):
    super().__init__()
    if window_hours <= 0:
      raise ConfigError('window_hours', 'must be positive')
    if allowed_lateness_seconds < 0:
      raise ConfigError('allowed_lateness', 'must not be negative')
    if decision_interval_seconds < 0:
      raise ConfigError('decision_interval', 'must not be negative')
    window = int(round(window_hours * HOUR_MICROS))
    if bounded:
      self._fn = _DecideBounded(window)
    else:
      self._fn = _DecideInEventTimeOrder(
          window, int(round(allowed_lateness_seconds * 1_000_000)),
          int(round(decision_interval_seconds * 1_000_000)))

  def expand(self, keyed_comments):
    outputs = (
        keyed_comments
        | 'DecideInEventTimeOrder' >> beam.ParDo(self._fn).with_input_types(
            beam.typehints.Tuple[str, beam.typehints.Any]).with_outputs(
            DEAD_LETTER, main='decisions'))
    return outputs
