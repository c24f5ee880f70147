"""Parses prediction-log rows and ground-truth rows for evaluation.

Every row either becomes one compact tuple keyed by the client key, or one
dead letter with a reason, so inputs = parsed + dead letters. Parsing happens
once, here, at the edge: times become epoch seconds plus a UTC day, key
segments are split out, binary scores are turned into labels. Everything
downstream works on small tuples (the join shuffles them, the combiners add
them up), which keeps per-element Python work small.

Prediction rows may be the prediction log's rows (common/records/prediction_log.py)
or batch_predict's keyed records ({"key", "model_version", "predictions":
{output: value}, "predicted_at"}), so a batch run can be evaluated directly.

Class labels (ground truth, and predictions that are labels rather than
scores) must name one of the run's classes (config.classes: --label_set, or
the binary pair --positive_label/--negative_label). A label is normalized
only by these rules: true/false are the positive/negative label; an exact
name; else the one class equal to it once surrounding spaces are dropped
and case is ignored (" Positive " is "positive"). Anything else ("neutral"
for a binary model, 1) is an `unknown_label` dead letter: an extra class
would change every metric of the run. A line that is not UTF-8 text, or
holds a lone surrogate, is an `invalid_text` dead letter.
A row may say `role`: 'live' (the default when absent) or 'shadow' (a model
scored beside the live one, its answers not served). Shadow rows are
evaluated apart: their model version reads 'V (shadow)' in the metrics and
their drift records have the slice 'role=shadow'.

With drift on (config.drift), each parsed row, labelled or not, also goes
out on the PROFILE output: with a baseline file, binned here already, as
((model, version, slice, window start), {statistic: bin}), once per
window holding the row (several with sliding windows) (one step less
per row than a side input downstream: the baseline is known when the job is
built); with a baseline window, as ((model, version, slice), epoch,
profile, output names), binned once the window's baseline is built
(transforms/evaluation/drift.py).
"""
import datetime
import functools
import json
import math

import apache_beam as beam
from apache_beam.metrics import Metrics

from common import feature_stats
from common.config_error import ConfigError
from common.unicode_text import has_lone_surrogate
from transforms.dead_letter import reject
from transforms.evaluation.config import parse_window_spec
from transforms.evaluation.config import to_utc
from transforms.evaluation.config import window_starts

METRICS_NAMESPACE = 'evaluation'
DEFAULT_MODEL = 'unknown'
PROFILE = 'profile'
ROLES = ('live', 'shadow')


class BadValue(ValueError):
  """A field is present but cannot be used; the message says why."""


class UnknownLabel(BadValue):
  """A class label that names none of the run's classes."""


def check_classes(positive_label, negative_label, label_set):
  """Raises ConfigError unless LabelRule can tell the classes apart: the
  binary pair differs, and a label set names two classes or more, each
  once. (The evaluation job and stream_predict's accuracy gate both read
  labels by LabelRule.)"""
  if positive_label == negative_label:
    raise ConfigError('negative_label', 'must differ from --positive_label')
  if len(set(label_set)) != len(label_set):
    raise ConfigError('label_set', 'names a class twice')
  if len(label_set) == 1:
    raise ConfigError('label_set', 'name at least two classes')


class LabelRule:
  """The normalization rules of the module docstring, over `classes`."""

  def __init__(self, config):
    self._positive, self._negative = (config.positive_label,
                                      config.negative_label)
    self._classes = frozenset(config.classes)
    folded = {}
    for name in config.classes:
      folded.setdefault(name.strip().casefold(), []).append(name)
    self._folded = {k: v[0] for k, v in folded.items() if len(v) == 1}

  def label(self, value):
    """The class `value` names; raises UnknownLabel, or BadValue for what
    is not a label at all."""
    if isinstance(value, bool):
      value = self._positive if value else self._negative
    elif isinstance(value, float) and value.is_integer():
      value = str(int(value))
    elif isinstance(value, int):
      value = str(value)
    if not isinstance(value, str) or not value:
      raise BadValue(f'expected a class label, got {value!r}')
    if value in self._classes:
      return value
    found = self._folded.get(value.strip().casefold())
    if found is None:
      raise UnknownLabel(f'{value!r} is none of the classes '
                         f'{sorted(self._classes)} (--label_set)')
    return found


def unwrap(value, field):
  """The single value inside the book's JSON shapes.

  Accepts {"predictions": [x]} (also as a JSON string, as BigQuery stores
  it), {output: value} dicts (pick `field`, or the only one) and one-element
  lists (outputs of shape [1]).
  """
  if isinstance(value, str) and value.startswith('{'):
    try:
      value = json.loads(value)
    except ValueError:
      return value
  if isinstance(value, dict) and isinstance(value.get('predictions'), list):
    items = value['predictions']
    if len(items) != 1:
      raise BadValue(f'expected one prediction, got {len(items)}')
    value = items[0]
  if isinstance(value, dict):
    if field is not None:
      if field not in value:
        raise BadValue(f'no field {field!r}; it has {sorted(value)}')
      value = value[field]
    elif len(value) == 1:
      value = next(iter(value.values()))
    else:
      raise BadValue(f'several outputs {sorted(value)}: choose one with '
                     '--prediction_field')
  if isinstance(value, list) and len(value) == 1:
    value = value[0]
  return value


@functools.lru_cache(maxsize=4096)
def periods(day):
  """'2026-01-05' -> {"day", "week" (ISO), "month"}: computed once per day."""
  year, week, _ = datetime.date.fromisoformat(day).isocalendar()
  return {'day': day, 'week': f'{year}-W{week:02d}', 'month': day[:7]}


def parse_time(value):
  """ISO-8601 string -> (epoch seconds, UTC day 'YYYY-MM-DD')."""
  if not isinstance(value, str):
    raise BadValue(f'expected an ISO-8601 string, got {type(value).__name__}')
  try:
    dt = to_utc(datetime.datetime.fromisoformat(value))
  except ValueError as e:
    raise BadValue(str(e)) from e
  return dt.timestamp(), dt.date().isoformat()


def _load(line):
  """A JSON object from a line, or None."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  return row if isinstance(row, dict) else None


def _decoded(value):
  """A JSON-text field (as BigQuery stores them) decoded; others as they are."""
  if isinstance(value, str) and value.startswith('{'):
    try:
      return json.loads(value)
    except ValueError:
      return None
  return value


def _only(value, field):
  """The one element of {field: [x]}, or {} when the shape is otherwise."""
  value = _decoded(value)
  if isinstance(value, dict) and isinstance(value.get(field), list):
    items = value[field]
    value = items[0] if len(items) == 1 else None
  return value if isinstance(value, dict) else {}


def _key_of(row):
  key = row.get('key')
  if isinstance(key, bool) or not isinstance(key, (str, int)) or key == '':
    return None
  return str(key)


class _ParseKeyedRows(beam.DoFn):
  """What reading every evaluation input shares: blank lines skipped, rows
  counted, decoded and keyed, with the same dead letters; `parse(key, row,
  line)` of a subclass does the rest. Subclasses set STAGE and the
  `_read` counter."""
  STAGE = None

  def process(self, line):
    if not line.strip():
      return
    self._read.inc()
    if isinstance(line, bytes):
      try:
        line = line.decode('utf-8')
      except UnicodeDecodeError as e:
        yield reject(None, self.STAGE, 'invalid_text', line,
                     f'not UTF-8 text: {e}')
        return
    row = _load(line)
    if row is None:
      yield reject(None, self.STAGE, 'unparseable_row', line)
      return
    if '\\u' in line and has_lone_surrogate(row):
      yield reject(None, self.STAGE, 'invalid_text', line,
                   'a string holds a lone surrogate (not Unicode text)')
      return
    key = _key_of(row)
    if key is None:
      yield reject(None, self.STAGE, 'missing_key', row)
      return
    yield from self.parse(key, row, line)

  def parse(self, key, row, line):
    raise NotImplementedError


class ParsePredictions(_ParseKeyedRows):
  """JSON line -> (key, (model, version, epoch, day, segments, label, score)).

  `label` is the predicted class; `score` the positive-class probability for
  binary models (label = positive if score >= threshold), else None.
  `segments` is a tuple of (name, value) from the key for `segment_by`.
  """
  STAGE = 'parse_prediction'

  def __init__(self, config):
    self._c = config
    self._labels = LabelRule(config)
    parts = config.key_segments
    self._segment_index = tuple(
        (name, parts.index(name)) for name in config.segment_by)
    self._read = Metrics.counter(METRICS_NAMESPACE, 'prediction_rows_read')
    self._parsed = Metrics.counter(METRICS_NAMESPACE, 'predictions_parsed')
    self._mismatch = Metrics.counter(METRICS_NAMESPACE,
                                     'key_segments_mismatch')
    self._drift = config.drift
    self._window = parse_window_spec(config.drift_window)
    self._vocabulary = self._binner = None
    if config.baseline is not None:
      self._vocabulary = feature_stats.vocabulary_of(config.baseline)
      self._binner = feature_stats.Binner(config.baseline)
    self._no_stats = Metrics.counter(METRICS_NAMESPACE, 'drift_rows_no_stats')

  def _segments(self, key):
    if not self._segment_index:
      return ()
    parts = key.split(self._c.key_separator)
    if len(parts) != len(self._c.key_segments):
      self._mismatch.inc()
      return ()
    return tuple((name, parts[i]) for name, i in self._segment_index)

  def _label_and_score(self, value):
    c = self._c
    if isinstance(value, bool):
      return (c.positive_label if value else c.negative_label), None
    if isinstance(value, (int, float)):
      score = float(value)
      if not 0.0 <= score <= 1.0:  # also rejects NaN
        raise BadValue(f'probability {value!r} is not in [0, 1]')
      label = c.positive_label if score >= c.threshold else c.negative_label
      return label, score
    if isinstance(value, str) and value:
      return self._labels.label(value), None
    raise BadValue(f'expected a probability or a class label, got {value!r}')

  def parse(self, key, row, line):
    if 'raw_prediction' in row:
      prediction, time = row['raw_prediction'], row.get('time')
    else:  # batch_predict's keyed records
      prediction, time = row.get('predictions'), row.get('predicted_at')
    version = row.get('model_version')
    role = row.get('role')
    for name, value in (('model_version', version), ('time', time),
                        ('prediction', prediction)):
      if value is None or value == '':
        yield reject(key, self.STAGE, 'missing_field', row,
                     f'{name} is missing')
        return
    try:
      epoch, day = parse_time(time)
    except BadValue as e:
      yield reject(key, self.STAGE, 'bad_time', row, e)
      return
    try:
      label, score = self._label_and_score(
          unwrap(prediction, self._c.prediction_field))
    except UnknownLabel as e:
      yield reject(key, self.STAGE, 'unknown_label', row, e)
      return
    except BadValue as e:
      yield reject(key, self.STAGE, 'bad_prediction', row, e)
      return
    if role is not None and role not in ROLES:
      yield reject(key, self.STAGE, 'bad_role', row,
                   f'role {role!r} is not one of {ROLES}')
      return
    self._parsed.inc()
    model, version = str(row.get('model') or DEFAULT_MODEL), str(version)
    shadow = role == 'shadow'
    if self._drift:
      yield from self._drift_row(row, prediction, epoch, (
          model, version, 'role=shadow' if shadow else 'all'))
    yield key, (model, f'{version} (shadow)' if shadow else version, epoch,
                day, self._segments(key), label, score)


  def _drift_row(self, row, prediction, epoch, key):
    outputs = _only(prediction, 'predictions')
    row_profile = feature_stats.profile(_only(row.get('raw_data'), 'instances'),
                                        outputs, self._vocabulary)
    if self._binner is None:
      yield beam.pvalue.TaggedOutput(PROFILE, (key, epoch, row_profile,
                                               tuple(outputs)))
      return
    bins = self._binner(row_profile)
    if bins:
      for start in window_starts(epoch, *self._window):
        yield beam.pvalue.TaggedOutput(PROFILE, (key + (start,), bins))
    else:
      self._no_stats.inc()


class ParseLabels(_ParseKeyedRows):
  """JSON line -> (key, (labeled_at epoch, label, line)).

  The line travels as it is (one string is cheaper to shuffle than a dict)
  and is decoded again only if the label ends up unmatched.

  A missing labeled_at counts as older than any dated label. Labels are
  normalized by LabelRule (the module docstring).
  """
  STAGE = 'parse_label'

  def __init__(self, config):
    self._c = config
    self._labels = LabelRule(config)
    self._read = Metrics.counter(METRICS_NAMESPACE, 'label_rows_read')
    self._parsed = Metrics.counter(METRICS_NAMESPACE, 'labels_parsed')

  def parse(self, key, row, line):
    value = row.get(self._c.label_field)
    if value is None:
      yield reject(key, self.STAGE, 'missing_field', row,
                   f'{self._c.label_field} is missing')
      return
    labeled_at = row.get('labeled_at')
    try:
      epoch = -math.inf if labeled_at is None else parse_time(labeled_at)[0]
    except BadValue as e:
      yield reject(key, self.STAGE, 'bad_time', row, e)
      return
    try:
      label = self._labels.label(unwrap(value, self._c.prediction_field))
    except UnknownLabel as e:
      yield reject(key, self.STAGE, 'unknown_label', row, e)
      return
    except BadValue as e:
      yield reject(key, self.STAGE, 'bad_label', row, e)
      return
    self._parsed.inc()
    yield key, (epoch, label, line)
