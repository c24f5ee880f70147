"""The shadow gate: whether a candidate model version may replace the live
one, from the messages both predicted. Plain Python (no Beam, no
TensorFlow), so each decision is tested on its own.

A candidate is promoted once it has seen `min_examples` messages (counted
from its second batch: a model's first call traces its graph) when all
of these hold, and rejected (with the first that fails) otherwise:
- errors: its share of failed predictions is at most live's plus
  `max_error_rate_increase`;
- agreement: the share of messages on which both versions reach the same
  decision (`same_decision`; a failure on either side is no agreement) is
  at least `min_agreement`;
- latency: the p99 of its per-message model time is at most live's times
  `max_latency_ratio`.
"""
import dataclasses
import math

from common.config_error import ConfigError
from transforms.inference.signature_handler import InferenceFailure


@dataclasses.dataclass(frozen=True)
class GateRule:
  """The gate's thresholds.

  decision_output: the output whose value decides a message (default: the
    signature's first output). A number is the decision
    `value >= decision_threshold`; a list of numbers its argmax; anything
    else itself.
  """
  min_examples: int = 1000
  min_agreement: float = 0.95
  max_error_rate_increase: float = 0.01
  max_latency_ratio: float = 1.5
  decision_output: str | None = None
  decision_threshold: float = 0.5

  def __post_init__(self):
    if self.min_examples < 1:
      raise ConfigError('shadow_min_examples', 'must be at least 1')
    if not 0 <= self.min_agreement <= 1:
      raise ConfigError('min_agreement', 'must be between 0 and 1')
    if not 0 <= self.max_error_rate_increase <= 1:
      raise ConfigError('max_error_rate_increase', 'must be between 0 and 1')
    if self.max_latency_ratio <= 0:
      raise ConfigError('max_latency_ratio', 'must be positive')


def _decision(value, threshold):
  if isinstance(value, bool):
    return value
  if isinstance(value, (int, float)):
    return value >= threshold
  if (isinstance(value, list) and value
      and all(isinstance(v, (int, float)) for v in value)):
    return max(range(len(value)), key=value.__getitem__)
  return value


def same_decision(live, shadow, output, threshold):
  """Whether two inferences ({output: value}) decide the same."""
  return (_decision(live.get(output), threshold)
          == _decision(shadow.get(output), threshold))


def p99(values):
  """The 99th percentile (nearest rank) of `values`, or None when empty."""
  if not values:
    return None
  ordered = sorted(values)
  return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class GateTally:
  """What one process saw of a live/shadow pair: examples, agreement,
  failures and per-message model times (bounded: at most one per example
  until the decision)."""

  def __init__(self, rule, output):
    self._rule, self._output = rule, output
    self.examples = self.agreed = 0
    self.live_errors = self.shadow_errors = 0
    self._live_s, self._shadow_s = [], []

  def add(self, live, shadow, live_seconds, shadow_seconds):
    """One batch: the two versions' inferences (InferenceFailure for a
    failed one) and the seconds each model call took."""
    n = len(live)
    self.examples += n
    for a, b in zip(live, shadow):
      live_failed = isinstance(a, InferenceFailure)
      shadow_failed = isinstance(b, InferenceFailure)
      self.live_errors += live_failed
      self.shadow_errors += shadow_failed
      if not (live_failed or shadow_failed) and same_decision(
          a, b, self._output, self._rule.decision_threshold):
        self.agreed += 1
    # Each message of a batch waited for the whole call.
    self._live_s += [live_seconds] * n
    self._shadow_s += [shadow_seconds] * n

  def figures(self):
    n = self.examples
    ms = lambda s: None if s is None else round(s * 1000, 3)
    return {
        'examples': n,
        'agreement': round(self.agreed / n, 6) if n else None,
        'live_error_rate': round(self.live_errors / n, 6) if n else None,
        'shadow_error_rate': round(self.shadow_errors / n, 6) if n else None,
        'live_p99_ms': ms(p99(self._live_s)),
        'shadow_p99_ms': ms(p99(self._shadow_s)),
    }

  def decide(self):
    """None until min_examples; then (promoted: bool, reason)."""
    rule = self._rule
    if self.examples < rule.min_examples:
      return None
    f = self.figures()
    if (f['shadow_error_rate'] >
        f['live_error_rate'] + rule.max_error_rate_increase):
      return False, (f'error rate {f["shadow_error_rate"]:.4f} > live\'s '
                     f'{f["live_error_rate"]:.4f} + '
                     f'{rule.max_error_rate_increase}')
    if f['agreement'] < rule.min_agreement:
      return False, (f'agreement {f["agreement"]:.4f} < min_agreement '
                     f'{rule.min_agreement}')
    if f['shadow_p99_ms'] > f['live_p99_ms'] * rule.max_latency_ratio:
      return False, (f'p99 latency {f["shadow_p99_ms"]} ms > live\'s '
                     f'{f["live_p99_ms"]} ms x {rule.max_latency_ratio}')
    return True, (f'agreement {f["agreement"]:.4f}, error rate '
                  f'{f["shadow_error_rate"]:.4f}, p99 '
                  f'{f["shadow_p99_ms"]} ms over {f["examples"]} messages')
