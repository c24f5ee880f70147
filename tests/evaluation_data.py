"""Small synthetic prediction logs and labels, and an independent oracle.

The oracle re-derives the joined data (latest label per key, latest
prediction per key and version) and each slice's membership in plain Python,
so the Beam results can be checked against scikit-learn on the same rows.
"""
import datetime
import json
import random

from common.records.prediction_log import log_row

POS, NEG = 'positive', 'negative'
AS_OF = datetime.datetime(2026, 1, 10, 12, tzinfo=datetime.timezone.utc)


def iso(dt):
  return dt.isoformat()


def binary_world(seed=3, n_keys=400):
  """Two versions of a binary model; keys like '35-F-00012'."""
  rng = random.Random(seed)
  predictions, labels = [], []
  truth = {}
  for i in range(n_keys):
    key = f'{rng.choice(["25", "35", "45"])}-{rng.choice("FM")}-{i:05d}'
    true = rng.choice([POS, NEG])
    truth[key] = true
    day = datetime.datetime(2026, 1, 1 + i % 10, i % 9,
                            tzinfo=datetime.timezone.utc)
    for version, skill in (('1', 0.15), ('2', 0.25)):
      if version == '2' and (i % 2 or i % 10 < 5):
        continue  # version 2: half the keys, from 6 January on
      mean = 0.5 + (skill if true == POS else -skill)
      score = round(min(1.0, max(0.0, rng.gauss(mean, 0.2))), 3)
      predictions.append(log_row(
          'sentiment', version, key, {'reviews': f'text {i}'},
          {'positive_review_probability': score, 'positive_review_logits': 0},
          iso(day)))
    if i % 13 == 0:
      continue  # unlabelled
    labelled_at = day + datetime.timedelta(days=2)
    if i % 7 == 0:  # relabelled: the later label (listed first) wins
      labels.append({'key': key, 'groundtruth': true,
                     'labeled_at': iso(labelled_at + datetime.timedelta(1))})
      labels.append({'key': key, 'groundtruth': NEG if true == POS else POS,
                     'labeled_at': iso(labelled_at)})
    else:
      labels.append({'key': key, 'groundtruth': true,
                     'labeled_at': iso(labelled_at)})
  for j in range(5):  # labels for keys nobody scored
    labels.append({'key': f'99-F-{90000 + j}', 'groundtruth': POS,
                   'labeled_at': iso(AS_OF)})
  return predictions, labels


def multiclass_world(seed=5, n_keys=300):
  """The book's source model: a class label per title."""
  rng = random.Random(seed)
  classes = ['github', 'nytimes', 'techcrunch']
  predictions, labels = [], []
  for i in range(n_keys):
    key = f'title-{i}'
    true = rng.choice(classes)
    predicted = true if rng.random() < 0.6 else rng.choice(classes)
    when = datetime.datetime(2026, 1, 2 + i % 6, tzinfo=datetime.timezone.utc)
    predictions.append(log_row('source', 'v1', key, {'title': f't{i}'},
                               {'source': predicted, 'confidence': 0.5},
                               iso(when)))
    labels.append({'key': key, 'groundtruth': {'predictions': [
        {'source': true, 'confidence': 1.0}]}, 'labeled_at': iso(AS_OF)})
  return predictions, labels


def lines(rows):
  return [json.dumps(r) for r in rows]


def joined(predictions, labels, label_of=lambda v: v):
  """[(model, version, key, time, true or None, prediction value)]."""
  latest = {}
  for row in labels:
    if row['key'] not in latest or row['labeled_at'] > latest[row['key']][0]:
      latest[row['key']] = (row['labeled_at'], label_of(row['groundtruth']))
  out = []
  for row in predictions:
    true = latest.get(row['key'], (None, None))[1]
    out.append((row['model'], row['model_version'], row['key'], row['time'],
                true, json.loads(row['raw_prediction'])['predictions'][0]))
  return out


def in_slice(record, row, key_segments=('age', 'sex', 'id')):
  """Whether a joined row belongs to a slice record, from first principles."""
  model, version, key, time, _, _ = row
  if (model, version) != (record['model'], record['model_version']):
    return False
  when = datetime.datetime.fromisoformat(time)
  period = record['period']
  t = record['time_slice']
  if t == 'day' and when.date().isoformat() != period:
    return False
  if t == 'week':
    year, week, _ = when.isocalendar()
    if f'{year}-W{week:02d}' != period:
      return False
  if t == 'month' and when.strftime('%Y-%m') != period:
    return False
  if t == 'window':
    start = datetime.datetime.fromisoformat(record['window_start'])
    end = datetime.datetime.fromisoformat(record['window_end'])
    if not start < when <= end:
      return False
  if record['segment_name'] is not None:
    parts = dict(zip(key_segments, key.split('-')))
    if parts.get(record['segment_name']) != record['segment_value']:
      return False
  return True
