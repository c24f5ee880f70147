"""The forwarding rule of a two-phase cascade: what phase 1 may decide alone.

Two rules, written as on the command line:
  uncertain:LOW,HIGH  phase 1 decides when it is confident: score < LOW is
                      negative, score > HIGH is positive; LOW <= score <= HIGH
                      is forwarded to phase 2.
  positive:THRESHOLD  phase 1 screens: score < THRESHOLD is a final negative;
                      score >= THRESHOLD is forwarded for phase 2 to confirm
                      (the book's "is this worth sending to the cloud?").
Phase 2 decides positive at score >= 0.5.

Plain Python (no Beam), so the pipeline and the offline report apply exactly
the same rule.
"""
import typing

UNCERTAIN = 'uncertain'
POSITIVE = 'positive'
RULES = (UNCERTAIN, POSITIVE)
POSITIVE_LABEL = 'positive'
NEGATIVE_LABEL = 'negative'
PHASE2_THRESHOLD = 0.5


class ForwardRule(typing.NamedTuple):
  kind: str
  low: float
  high: float

  def __str__(self):
    if self.kind == UNCERTAIN:
      return f'{UNCERTAIN}:{self.low:g},{self.high:g}'
    return f'{POSITIVE}:{self.low:g}'

  def phase1_decision(self, score):
    """The final label phase 1 gives `score`, or None to forward it."""
    if self.kind == UNCERTAIN:
      if score < self.low:
        return NEGATIVE_LABEL
      if score > self.high:
        return POSITIVE_LABEL
      return None
    return NEGATIVE_LABEL if score < self.low else None


def phase2_decision(score):
  return POSITIVE_LABEL if score >= PHASE2_THRESHOLD else NEGATIVE_LABEL


def parse_rule(text):
  """'uncertain:0.2,0.8' or 'positive:0.3' -> ForwardRule; ValueError if not."""
  kind, sep, values = (text or '').partition(':')
  kind = kind.strip()
  if not sep or kind not in RULES:
    raise ValueError(f'{text!r} is not uncertain:LOW,HIGH or positive:THRESHOLD')
  try:
    numbers = [float(v) for v in values.split(',')]
  except ValueError:
    raise ValueError(f'{text!r}: thresholds must be numbers') from None
  if any(not 0.0 <= n <= 1.0 for n in numbers):
    raise ValueError(f'{text!r}: thresholds must be probabilities in [0, 1]')
  if kind == UNCERTAIN:
    if len(numbers) != 2 or numbers[0] > numbers[1]:
      raise ValueError(f'{text!r}: uncertain takes LOW,HIGH with LOW <= HIGH')
    return ForwardRule(UNCERTAIN, numbers[0], numbers[1])
  if len(numbers) != 1:
    raise ValueError(f'{text!r}: positive takes one THRESHOLD')
  return ForwardRule(POSITIVE, numbers[0], numbers[0])
