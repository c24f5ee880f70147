"""Joins predictions with their latest ground truth, by key, in Beam.

CoGroupByKey brings every prediction and label of a key together on one
worker; nothing is joined in a single process. Per key:
- the latest label wins (by labeled_at; ties go to the larger label so reruns
  agree); older labels are counted as superseded;
- a key scored twice by the same model version keeps its latest prediction
  (a rerun), the others are counted as superseded;
- labels without any prediction are dead letters ('unmatched_label'), and
  so is a latest label that a binary model (a prediction with a score)
  cannot predict: neither the positive nor the negative label
  ('unknown_label'); the key's predictions then count as unlabelled;
- every kept prediction becomes one scored row for its (model, version),
  labelled or not;
- a labelled key scored by several versions of one model also yields a
  pair per two versions, for the version comparison.

Scored row: (epoch, day, segments, true, predicted, score_bin, loss, is_pos,
score). `score_bin`, `loss` and `score` are set only where ROC AUC, log loss
and calibration are defined: a binary score and a label that is the positive
or negative label.
"""
import itertools
import json
import math
import sys

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject
from transforms.evaluation.rows import METRICS_NAMESPACE

COMPARISON = 'comparison'
# ROC AUC is computed from a histogram in logit space: bins of 1/1000 logit.
# Scores whose logits differ by less than that may tie (see docs/evaluation).
BINS_PER_LOGIT = 1000
EPS = sys.float_info.epsilon  # scikit-learn's clipping for float64 scores


def version_order(version):
  """Numeric versions in numeric order ('2' < '10'), then the others."""
  return (0, int(version), '') if version.isdigit() else (1, 0, version)


def score_terms(score, true, positive, negative):
  """(score_bin, loss, is_pos) of a labelled binary prediction.

  (None, None, None) where AUC and log loss are undefined (no score, or a
  label outside the binary pair).
  """
  if score is None or (true != positive and true != negative):
    return None, None, None
  p = min(max(score, EPS), 1.0 - EPS)
  is_pos = true == positive
  loss = -math.log(p if is_pos else 1.0 - p)
  return round(math.log(p / (1.0 - p)) * BINS_PER_LOGIT), loss, is_pos


def _recency(prediction):
  """Latest time wins; label and score only break exact ties, so that the
  choice never depends on the order rows arrive in."""
  _, _, epoch, _, _, label, score = prediction
  return epoch, label, -1.0 if score is None else score


class JoinKey(beam.DoFn):
  """The join of one key's predictions and labels (batch: grouped by
  CoGroupByKey; streaming: buffered in state, stream_join.py)."""

  def __init__(self, config):
    self._pos = config.positive_label
    self._neg = config.negative_label
    counter = lambda name: Metrics.counter(METRICS_NAMESPACE, name)
    self._labels_superseded = counter('labels_superseded')
    self._labels_matched = counter('labels_matched')
    self._predictions_superseded = counter('predictions_superseded')
    self._labelled = counter('predictions_labelled')
    self._unlabelled = counter('predictions_unlabelled')
    self._unknown = counter('labels_unknown')

  def process(self, element):
    key, grouped = element
    predictions, labels = grouped['predictions'], grouped['labels']
    true = latest = None
    if labels:
      labels = list(labels)
      latest = max(labels, key=lambda l: (l[0], l[1]))
      true = latest[1]
      if len(labels) > 1:
        self._labels_superseded.inc(len(labels) - 1)
    kept = {}
    count = 0
    for p in predictions:
      count += 1
      mv = (p[0], p[1])
      if mv not in kept or _recency(p) > _recency(kept[mv]):
        kept[mv] = p
    if not count:
      yield reject(key, 'join', 'unmatched_label', json.loads(latest[2]),
                   'no prediction has this key')
      return
    if count > len(kept):
      self._predictions_superseded.inc(count - len(kept))
    if true is not None and true not in (self._pos, self._neg) and any(
        p[6] is not None for p in kept.values()):
      self._unknown.inc()
      yield reject(key, 'join', 'unknown_label', json.loads(latest[2]),
                   f'label {true!r} is neither {self._pos!r} nor '
                   f'{self._neg!r}, the binary model\'s labels')
      true = None
    if true is None:
      self._unlabelled.inc(len(kept))
    else:
      self._labels_matched.inc()
      self._labelled.inc(len(kept))
    rows = {}
    for mv, (_, _, epoch, day, segments, predicted, score) in kept.items():
      score_bin, loss, is_pos = (None, None, None) if true is None else (
          score_terms(score, true, self._pos, self._neg))
      rows[mv] = row = (epoch, day, segments, true, predicted, score_bin,
                        loss, is_pos, None if score_bin is None else score)
      yield mv, row
    if true is not None and len(rows) > 1:
      ordered = sorted(rows, key=lambda mv: (mv[0], version_order(mv[1])))
      for a, b in itertools.combinations(ordered, 2):
        if a[0] == b[0]:
          yield beam.pvalue.TaggedOutput(
              COMPARISON, ((a[0], a[1], b[1]), (rows[a], rows[b])))


class JoinLabels(beam.PTransform):
  """(predictions, labels) keyed PCollections -> scored rows.

  Returns a DoOutputsTuple: main = ((model, version), scored row),
  'comparison' = ((model, version_a, version_b), (row_a, row_b)),
  'dead_letter' = unmatched labels.
  """

  def __init__(self, config):
    super().__init__()
    self._config = config

  def expand(self, inputs):
    predictions, labels = inputs
    return (
        {'predictions': predictions, 'labels': labels}
        | 'CoGroupByKey' >> beam.CoGroupByKey()
        | 'Join' >> beam.ParDo(JoinKey(self._config)).with_outputs(
            COMPARISON, DEAD_LETTER, main='scored'))
