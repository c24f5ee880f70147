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

With labels (a tally given `classes`), the pair of decisions of every
counted message is held by key until its label arrives or the shadow is
decided (so at most one pair per example). Once `min_labelled` of them are
labelled, accuracy replaces agreement: the shadow's share of right decisions
must be at least live's minus `max_accuracy_drop`, whatever its agreement
(agreement only stands in for accuracy when nothing says which version is
right). With fewer labels the gate decides on agreement and its reason says
that accuracy was not counted.
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
  min_labelled: int = 100
  max_accuracy_drop: float = 0.0

  def __post_init__(self):
    if self.min_examples < 1:
      raise ConfigError('shadow_min_examples', 'must be at least 1')
    if not 0 <= self.min_agreement <= 1:
      raise ConfigError('min_agreement', 'must be between 0 and 1')
    if not 0 <= self.max_error_rate_increase <= 1:
      raise ConfigError('max_error_rate_increase', 'must be between 0 and 1')
    if self.max_latency_ratio <= 0:
      raise ConfigError('max_latency_ratio', 'must be positive')
    if self.min_labelled < 1:
      raise ConfigError('min_labelled', 'must be at least 1')
    if not 0 <= self.max_accuracy_drop <= 1:
      raise ConfigError('max_accuracy_drop', 'must be between 0 and 1')


def decision(value, threshold):
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
  return (decision(live.get(output), threshold)
          == decision(shadow.get(output), threshold))


def p99(values):
  """The 99th percentile (nearest rank) of `values`, or None when empty."""
  if not values:
    return None
  ordered = sorted(values)
  return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class GateTally:
  """What one process saw of a live/shadow pair: examples, agreement,
  failures, per-message model times and, with `classes` (a
  transforms.streaming.labels.Classes), the labelled keys (bounded: at
  most one of each per example until the decision)."""

  def __init__(self, rule, output, classes=None):
    self._rule, self._output, self._classes = rule, output, classes
    self.examples = self.agreed = 0
    self.live_errors = self.shadow_errors = 0
    self._live_s, self._shadow_s = [], []
    self._unlabelled = {}  # key -> (live's class, shadow's class) or None
    self.labelled = self.live_right = self.shadow_right = 0

  def add(self, live, shadow, live_seconds, shadow_seconds, keys=None):
    """One batch: the two versions' inferences (InferenceFailure for a
    failed one), the seconds each model call took, and the messages' keys
    (held for their labels when the tally has classes)."""
    n = len(live)
    self.examples += n
    if self._classes is not None and keys is not None:
      for key, a, b in zip(keys, live, shadow):
        self._unlabelled[key] = (self._class_of(a), self._class_of(b))
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

  def _class_of(self, inference):
    if isinstance(inference, InferenceFailure):
      return None  # a failed prediction is never right
    return self._classes.of_decision(decision(
        inference.get(self._output), self._rule.decision_threshold))

  def label(self, key, label):
    """Counts `label` (a class) for `key`: True when the key's pair was
    held (a counted message not labelled yet), else False."""
    pair = self._unlabelled.pop(key, None)
    if pair is None:
      return False
    self.labelled += 1
    self.live_right += pair[0] == label
    self.shadow_right += pair[1] == label
    return True

  def figures(self):
    n = self.examples
    ms = lambda s: None if s is None else round(s * 1000, 3)
    share = lambda right: (round(right / self.labelled, 6) if self.labelled
                           else None)
    labels = {}
    if self._classes is not None:
      labels = {'labelled': self.labelled,
                'live_accuracy': share(self.live_right),
                'shadow_accuracy': share(self.shadow_right)}
    return labels | {
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
    counts_accuracy = (self._classes is not None
                       and self.labelled >= rule.min_labelled)
    if counts_accuracy:
      # rounded as the figures are: 0.8 - 0.1 is 0.7000000000000001
      floor = round(f['live_accuracy'] - rule.max_accuracy_drop, 6)
      if f['shadow_accuracy'] < floor:
        return False, (f'accuracy {f["shadow_accuracy"]:.4f} < live\'s '
                       f'{f["live_accuracy"]:.4f} - {rule.max_accuracy_drop}'
                       f' over {self.labelled} labelled messages')
    elif f['agreement'] < rule.min_agreement:
      return False, (f'agreement {f["agreement"]:.4f} < min_agreement '
                     f'{rule.min_agreement}{self._unlabelled_note()}')
    if f['shadow_p99_ms'] > f['live_p99_ms'] * rule.max_latency_ratio:
      return False, (f'p99 latency {f["shadow_p99_ms"]} ms > live\'s '
                     f'{f["live_p99_ms"]} ms x {rule.max_latency_ratio}')
    if counts_accuracy:
      judged = (f'accuracy {f["shadow_accuracy"]:.4f} (live '
                f'{f["live_accuracy"]:.4f}) over {self.labelled} labelled, '
                f'agreement {f["agreement"]:.4f}')
    else:
      judged = f'agreement {f["agreement"]:.4f}'
    return True, (f'{judged}, error rate {f["shadow_error_rate"]:.4f}, p99 '
                  f'{f["shadow_p99_ms"]} ms over {f["examples"]} messages'
                  f'{self._unlabelled_note()}')

  def _unlabelled_note(self):
    """What a decision without accuracy says when labels were expected."""
    if self._classes is None or self.labelled >= self._rule.min_labelled:
      return ''
    return (f'; accuracy not counted: {self.labelled} labelled messages < '
            f'min_labelled {self._rule.min_labelled}')
