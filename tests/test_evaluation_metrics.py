"""SliceMetrics (the mergeable counts) against scikit-learn, without Beam."""
import random

import pytest
from sklearn import metrics as sk

from transforms.evaluation.join import score_terms
from transforms.evaluation.metrics import SliceMetrics

POS, NEG = 'positive', 'negative'


def _binary(n, seed, decimals):
  rng = random.Random(seed)
  rows = []
  for _ in range(n):
    true = rng.choice([POS, NEG])
    # Informative but imperfect scores, with ties when rounded.
    score = min(1.0, max(0.0, rng.gauss(0.65 if true == POS else 0.35, 0.2)))
    if decimals is not None:
      score = round(score, decimals)
    rows.append((true, score))
  return rows


def _counts(rows, threshold=0.5, merge_every=None):
  """SliceMetrics over rows, optionally built in parts and merged."""
  parts = [SliceMetrics()]
  for i, (true, score) in enumerate(rows):
    if merge_every and i % merge_every == 0:
      parts.append(SliceMetrics())
    predicted = POS if score >= threshold else NEG
    parts[-1].add(true, predicted, *score_terms(score, true, POS, NEG))
  merged = parts[0]
  for part in parts[1:]:
    merged.merge(part)
  return merged


@pytest.mark.parametrize('decimals,auc_tolerance', [(3, 1e-12), (None, 1e-4)])
@pytest.mark.parametrize('merge_every', [None, 37])
def test_binary_metrics_equal_scikit_learn(decimals, auc_tolerance,
                                           merge_every):
  rows = _binary(2000, seed=1, decimals=decimals)
  got = _counts(rows, merge_every=merge_every).metrics()
  y_true = [t for t, _ in rows]
  y_score = [s for _, s in rows]
  y_pred = [POS if s >= 0.5 else NEG for s in y_score]
  precision, recall, f1, support = sk.precision_recall_fscore_support(
      y_true, y_pred, zero_division=0)
  assert got['confusion_matrix']['labels'] == [NEG, POS]
  assert got['confusion_matrix']['matrix'] == sk.confusion_matrix(
      y_true, y_pred).tolist()
  assert [c['precision'] for c in got['per_class']] == pytest.approx(precision)
  assert [c['recall'] for c in got['per_class']] == pytest.approx(recall)
  assert [c['f1'] for c in got['per_class']] == pytest.approx(f1)
  assert [c['support'] for c in got['per_class']] == support.tolist()
  assert got['accuracy'] == pytest.approx(sk.accuracy_score(y_true, y_pred))
  assert got['macro_f1'] == pytest.approx(
      sk.f1_score(y_true, y_pred, average='macro'))
  assert got['weighted_f1'] == pytest.approx(
      sk.f1_score(y_true, y_pred, average='weighted'))
  is_pos = [t == POS for t in y_true]
  assert got['roc_auc'] == pytest.approx(sk.roc_auc_score(is_pos, y_score),
                                         abs=auc_tolerance)
  assert got['log_loss'] == pytest.approx(sk.log_loss(is_pos, y_score),
                                          rel=1e-9)
  assert got['count'] == got['labelled'] == 2000
  assert got['label_coverage'] == 1.0


def test_scores_of_zero_and_one_are_clipped_like_scikit_learn():
  rows = [(POS, 1.0), (NEG, 0.0), (POS, 0.0), (NEG, 0.3), (POS, 0.7)]
  got = _counts(rows).metrics()
  is_pos = [t == POS for t, _ in rows]
  scores = [s for _, s in rows]
  assert got['log_loss'] == pytest.approx(sk.log_loss(is_pos, scores),
                                          rel=1e-9)
  assert got['roc_auc'] == pytest.approx(sk.roc_auc_score(is_pos, scores))


def test_multiclass_metrics_equal_scikit_learn():
  rng = random.Random(7)
  classes = ['github', 'nytimes', 'techcrunch']
  y_true = [rng.choice(classes) for _ in range(500)]
  # Mostly right, sometimes a class never in y_true ('other').
  y_pred = [t if rng.random() < 0.7 else rng.choice(classes + ['other'])
            for t in y_true]
  counts = SliceMetrics()
  for t, p in zip(y_true, y_pred):
    counts.add(t, p, None, None, None)
  got = counts.metrics()
  labels = sorted(set(y_true) | set(y_pred))
  assert got['confusion_matrix'] == {
      'labels': labels,
      'matrix': sk.confusion_matrix(y_true, y_pred, labels=labels).tolist()}
  p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred,
                                                  zero_division=0)
  assert [c['label'] for c in got['per_class']] == labels
  assert [c['precision'] for c in got['per_class']] == pytest.approx(p)
  assert [c['recall'] for c in got['per_class']] == pytest.approx(r)
  assert [c['f1'] for c in got['per_class']] == pytest.approx(f)
  assert [c['support'] for c in got['per_class']] == s.tolist()
  assert got['macro_f1'] == pytest.approx(
      sk.f1_score(y_true, y_pred, average='macro', zero_division=0))
  assert got['weighted_f1'] == pytest.approx(
      sk.f1_score(y_true, y_pred, average='weighted', zero_division=0))
  assert got['accuracy'] == pytest.approx(sk.accuracy_score(y_true, y_pred))
  assert got['roc_auc'] is None and got['log_loss'] is None


def test_undefined_metrics_are_none_not_zero():
  empty = SliceMetrics().metrics()
  assert empty['count'] == 0
  assert all(empty[m] is None for m in (
      'label_coverage', 'accuracy', 'macro_f1', 'weighted_f1', 'roc_auc',
      'log_loss'))
  unlabelled = SliceMetrics()
  unlabelled.add(None, POS, None, None, None)
  assert unlabelled.metrics()['label_coverage'] == 0.0
  assert unlabelled.metrics()['accuracy'] is None
  one_class = _counts([(POS, 0.9), (POS, 0.2)]).metrics()
  assert one_class['roc_auc'] is None  # undefined with one class
  assert one_class['log_loss'] is not None
