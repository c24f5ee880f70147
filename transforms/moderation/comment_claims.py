"""Streaming: a comment_id belongs to the first commenter it arrives from.

The streaming form of comment_ids.OneCommenterPerId (batch replay). The rule
(rule.py) keeps state per commenter, so on its own it would decide a
comment_id sent by two commenters twice. Here each comment_id is claimed in
keyed state when its first comment arrives; a later comment of that id from
another commenter is a `duplicate` dead letter naming the owner, and the
owner's own copies go on to the rule, whose duplicate handling decides the
earliest of them as before.

First to *arrive*, not earliest in event time: this stage passes a comment
on as soon as it claims it, so the rule's decisions wait no longer than they
did. Owning by event time would mean holding every comment here until the
watermark had passed it by the allowed lateness, and the rule then waits as
long again, or taking back a claim the owner's comment may already have been
decided on.

Keyed by a shard of the comment_id (a stable hash modulo SHARDS), not by the
comment_id itself: Beam's Python DirectRunner visits every key a stateful
step has ever seen each time it looks for due timers, so a key per comment
makes the local runner slower the longer a stream lasts. A shard's state is
the claims of its ids, comment_id -> (event time, owner), as one combining
value, which the DirectRunner decodes and encodes once per bundle rather
than once per comment. One event-time timer per shard forgets claims once
the watermark is past their event time by the rule's window plus the
allowed lateness (the time the rule remembers a decided comment_id), on a
grid of PRUNE_FRACTION of the window, so state holds the claims of about
one window and follows the stream's rate, not its length. Measured cost:
docs/moderation.md.
"""
import zlib

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import CombiningValueStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import Timestamp

from common.config_error import ConfigError
from transforms.dead_letter import RoutedParDo
from transforms.moderation import comment_ids
from transforms.moderation.rule import HOUR_MICROS

SHARDS = 16
# Claims are forgotten on a grid of this share of the window (an hour for
# the default day): one timer firing per shard per grid step at most.
PRUNE_FRACTION = 1 / 24


def shard_of(comment_id):
  """The shard of a comment_id: the same in every process and run (Python's
  own hash of a str is salted per process)."""
  return zlib.crc32(comment_id.encode('utf-8', 'surrogatepass')) % SHARDS


class _Claims(beam.CombineFn):
  """(comment_id, event time micros, commenter_id) claims -> the dict
  comment_id -> (event time micros, commenter_id) of a shard.

  A claim is only added for an id the dict does not hold (the DoFn reads
  first), so the first claim stays. Accumulators only meet where a runner
  keeps several of them (blind writes on the Fn API); an id in two of them
  keeps the earlier claim, whichever accumulator comes first.
  """

  def create_accumulator(self):
    return {}

  def add_input(self, accumulator, claim):
    comment_id, t_micros, commenter_id = claim
    accumulator.setdefault(comment_id, (t_micros, commenter_id))
    return accumulator

  def merge_accumulators(self, accumulators):
    accumulators = iter(accumulators)
    merged = next(accumulators, None)  # the one Beam lets a merge modify
    if merged is None:
      return {}
    for other in accumulators:
      for comment_id, claim in other.items():
        held = merged.get(comment_id)
        if held is None or claim < held:
          merged[comment_id] = claim
    return merged

  def extract_output(self, accumulator):
    return accumulator


CLAIMS = CombiningValueStateSpec('claims', PickleCoder(), _Claims())
PRUNE = TimerSpec('prune', TimeDomain.WATERMARK)


class _ClaimIds(beam.DoFn):
  """(shard, comment) -> the comment (its commenter owns its id) | a
  `duplicate` dead letter (another commenter does)."""

  def __init__(self, keep_micros, grid_micros):
    self._keep = keep_micros
    self._grid = grid_micros
    self._refused = comment_ids.refused_counter()

  def process(self, element, t=beam.DoFn.TimestampParam,
              claims=beam.DoFn.StateParam(CLAIMS),
              prune=beam.DoFn.TimerParam(PRUNE)):
    _, comment = element
    comment_id, commenter_id = comment['comment_id'], comment['commenter_id']
    held = claims.read()
    claim = held.get(comment_id)
    if claim is None:
      if not held:  # an empty shard has no timer set
        prune.set(Timestamp(micros=self._prune_time(t.micros)))
      claims.add((comment_id, t.micros, commenter_id))
    elif claim[1] != commenter_id:
      self._refused.inc()
      yield comment_ids.duplicate(comment, claim[1])
      return
    yield comment

  def _prune_time(self, t_micros):
    """When a claim at `t_micros` can be forgotten, up to the grid."""
    return -(-(t_micros + self._keep) // self._grid) * self._grid

  @on_timer(PRUNE)
  def on_prune(self, fire=beam.DoFn.TimestampParam,
               claims=beam.DoFn.StateParam(CLAIMS),
               prune=beam.DoFn.TimerParam(PRUNE)):
    cutoff = fire.micros - self._keep
    kept = [(comment_id, t_micros, owner)
            for comment_id, (t_micros, owner) in claims.read().items()
            if t_micros > cutoff]
    claims.clear()
    for claim in kept:
      claims.add(claim)
    if kept:
      prune.set(Timestamp(micros=self._prune_time(min(c[1] for c in kept))))


class ClaimCommentIds(beam.PTransform):
  """Timestamped comments (streaming) -> Routed(the comments whose
  comment_id their commenter owns, duplicates). `window_hours` and
  `allowed_lateness_seconds` are the rule's: claims are kept as long as the
  rule remembers a decided comment_id."""

  def __init__(self, window_hours=24, allowed_lateness_seconds=0):
    super().__init__()
    if window_hours <= 0:
      raise ConfigError('window_hours', 'must be positive')
    if allowed_lateness_seconds < 0:
      raise ConfigError('allowed_lateness', 'must not be negative')
    window = int(round(window_hours * HOUR_MICROS))
    self._fn = _ClaimIds(
        window + int(round(allowed_lateness_seconds * 1_000_000)),
        max(1, int(window * PRUNE_FRACTION)))

  def expand(self, comments):
    return (comments
            | 'KeyByShard' >> beam.Map(
                lambda c: (shard_of(c['comment_id']), c)).with_output_types(
                    beam.typehints.Tuple[int, beam.typehints.Any])
            | 'Claim' >> RoutedParDo(self._fn))
