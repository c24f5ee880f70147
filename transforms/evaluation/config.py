"""What an evaluation run slices by and how it reads predictions and labels.

One frozen value object, built once from the command line by the pipeline
and handed to every evaluation transform, so the transforms never parse
command lines and tests can build one directly.
"""
import dataclasses
import datetime
import math
import re

TIME_SLICES = ('day', 'week', 'month', 'all')
_WINDOW = re.compile(r'^(\d+)([smhdw])$')
_UNIT_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}


def parse_window(text):
  """'7d' -> seconds; units s, m (minutes), h, d, w (weeks). None if bad."""
  match = _WINDOW.match(text.strip())
  if not match or int(match.group(1)) == 0:
    return None
  return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_window_spec(text):
  """'7d' (fixed) or '7d/1d' (7 days, one starting every day) -> (size,
  period) in seconds; None if bad (or the period exceeds the size)."""
  size_text, _, period_text = text.partition('/')
  size = parse_window(size_text)
  period = parse_window(period_text) if period_text else size
  if size is None or period is None or period > size:
    return None
  return size, period


def window_starts(epoch, size, period):
  """The starts (epoch seconds) of the windows holding `epoch`: windows of
  `size` seconds starting every `period`, aligned on the epoch, as Beam's
  SlidingWindows (FixedWindows when period == size) cut them."""
  last = math.floor(epoch / period) * period
  return [last - k * period for k in range(-(-size // period))
          if last - k * period + size > epoch]


def to_utc(dt):
  """Naive datetimes are taken as UTC (the project writes UTC everywhere)."""
  if dt.tzinfo is None:
    return dt.replace(tzinfo=datetime.timezone.utc)
  return dt.astimezone(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
  """Everything the evaluation transforms need; defaults fit the demo."""
  as_of: datetime.datetime            # UTC; trailing windows end here
  prediction_field: str | None = None  # None: the prediction's only field
  label_field: str = 'groundtruth'
  threshold: float = 0.5
  positive_label: str = 'positive'
  negative_label: str = 'negative'
  time_slices: tuple = TIME_SLICES
  windows: tuple = ('7d', '30d')       # names; seconds via parse_window
  key_segments: tuple = ()             # names of the key's parts, in order
  key_separator: str = '-'
  segment_by: tuple = ()               # the key parts metrics are sliced by
  alert_rules: tuple = ()              # transforms.evaluation.alerts.Rule
  alert_min_labelled: int = 1
  label_set: tuple = ()                # the classes; () is the binary pair

  @property
  def classes(self):
    """The class labels rows may name (transforms.evaluation.rows)."""
    return self.label_set or (self.positive_label, self.negative_label)
  # Drift (transforms/evaluation/drift.py): on when a baseline is given,
  # either a loaded baseline_stats.json (common.feature_stats) or a window
  # (start, end) epoch seconds of the log itself (start <= t < end).
  baseline: dict | None = dataclasses.field(default=None, compare=False)
  baseline_window: tuple | None = None
  drift_window: str = '1d'             # as parse_window_spec reads
  drift_rules: tuple = ()              # alerts.Rule, from --drift

  @property
  def drift(self):
    return self.baseline is not None or self.baseline_window is not None

  @property
  def as_of_epoch(self):
    return self.as_of.timestamp()

  def window_bounds(self):
    """[(name, start_epoch, end_epoch)]: a window holds start < t <= end."""
    end = self.as_of_epoch
    return [(w, end - parse_window(w), end) for w in self.windows]
