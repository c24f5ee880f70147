"""Labels for the shadow gate: label messages -> (key, class), and a
model's decision -> the class it predicts, so the gate can count how often
each version was right (transforms.streaming.gate).

A label message is JSON {"key", <label_field>, ...}. Its label is read by
the evaluation job's rule (transforms.evaluation.rows.LabelRule: the classes
are `label_set`, or the binary pair; true/false are the positive/negative
label; case and surrounding spaces are ignored). A decision is the gate's
(gate.decision): True/False is the positive/negative label, an argmax index
the class at that place in `label_set`, a string the class it names.

A label message that cannot be read (not JSON, no key, no label, a label
none of the classes) is counted and logged, not a dead letter of the
prediction job: that job's dead letters account for its own input messages
(messages in = predictions + dead letters, and local runs acknowledge
input messages by their outcomes), and a label is not one of them.
"""
import dataclasses
import json
import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.evaluation.rows import BadValue
from transforms.evaluation.rows import LabelRule
from transforms.evaluation.rows import check_classes

METRICS_NAMESPACE = 'model_gate'
KEY_FIELD = 'key'
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LabelConfig:
  """The classes labels and decisions name, as pipelines.evaluate's flags
  say them (--label_field, --positive_label, --negative_label,
  --label_set)."""
  label_field: str = 'groundtruth'
  positive_label: str = 'positive'
  negative_label: str = 'negative'
  label_set: tuple = ()

  def __post_init__(self):
    check_classes(self.positive_label, self.negative_label, self.label_set)

  @property
  def classes(self):
    return self.label_set or (self.positive_label, self.negative_label)


class Classes:
  """Turns labels and decisions into class names (see the module doc)."""

  def __init__(self, config):
    self._config = config
    self._rule = LabelRule(config)

  def label(self, value):
    """The class a label names; raises rows.BadValue when none."""
    return self._rule.label(value)

  def of_decision(self, decision):
    """The class a decision predicts, or None (it names none)."""
    if isinstance(decision, bool):
      return (self._config.positive_label if decision
              else self._config.negative_label)
    if isinstance(decision, int):
      classes = self._config.label_set
      return classes[decision] if 0 <= decision < len(classes) else None
    try:
      return self._rule.label(decision)
    except BadValue:
      return None


class _ParseLabels(beam.DoFn):

  def __init__(self, config):
    self._config = config
    self._classes = None
    self._bad = Metrics.counter(METRICS_NAMESPACE, 'labels_unreadable')

  def setup(self):
    self._classes = Classes(self._config)

  def process(self, message):
    try:
      record = json.loads(message)
      if not isinstance(record, dict):
        raise BadValue('not a JSON object')
      key = record.get(KEY_FIELD)
      if key is None or key == '':
        raise BadValue(f'no {KEY_FIELD!r}')
      if self._config.label_field not in record:
        raise BadValue(f'no {self._config.label_field!r}')
      yield str(key), self._classes.label(record[self._config.label_field])
    except (ValueError, UnicodeDecodeError) as e:  # BadValue is one
      self._bad.inc()
      _LOG.warning('Label message not used: %s', str(e)[:200])


class ParseLabels(beam.PTransform):
  """Label messages (bytes or str) -> (key, class); unreadable ones are
  counted (model_gate/labels_unreadable) and dropped."""

  def __init__(self, config):
    super().__init__()
    self._config = config

  def expand(self, messages):
    return messages | beam.ParDo(_ParseLabels(self._config))
