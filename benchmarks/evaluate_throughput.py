"""Times pipelines.evaluate on a synthetic prediction log (prints figures).

  python -m benchmarks.evaluate_throughput [--rows 1000000] [--dir /tmp/x]

Rows look like the demo's: a review of ~1 KB in raw_data, a binary score,
two model versions, 30 days, keys with age and sex segments; 90% labelled.
Target (a later issue): 1M rows in under 2 minutes on 2 cores.
"""
import argparse
import datetime
import json
import os
import random
import tempfile
import time

from common.records.prediction_log import log_row
from pipelines import evaluate

TEXT = 'A film review of about a kilobyte, as in the demo data. ' * 18


def write_inputs(directory, n_rows, seed=0):
  rng = random.Random(seed)
  start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
  log_path = os.path.join(directory, 'log.jsonl')
  labels_path = os.path.join(directory, 'labels.jsonl')
  with open(log_path, 'w') as log, open(labels_path, 'w') as labels:
    for i in range(n_rows):
      key = f'{rng.choice("234567")}5-{rng.choice("FM")}-{i:08d}'
      true = rng.random() < 0.5
      score = min(1.0, max(0.0, rng.gauss(0.7 if true else 0.3, 0.2)))
      when = start + datetime.timedelta(seconds=i * 30 * 86400 // n_rows)
      log.write(json.dumps(log_row(
          'sentiment', str(1 + i % 2), key, {'reviews': TEXT},
          {'positive_review_probability': score}, when.isoformat())) + '\n')
      if rng.random() < 0.9:
        labels.write(json.dumps({
            'key': key, 'groundtruth': 'positive' if true else 'negative',
            'labeled_at': when.isoformat()}) + '\n')
  return log_path, labels_path


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rows', type=int, default=1_000_000)
  parser.add_argument('--dir', default=None)
  args, beam_args = parser.parse_known_args()
  directory = args.dir or tempfile.mkdtemp(prefix='evaluate_bench_')
  os.makedirs(directory, exist_ok=True)
  t0 = time.perf_counter()
  log_path, labels_path = write_inputs(directory, args.rows)
  t1 = time.perf_counter()
  evaluate.run([
      '--predictions', log_path, '--ground_truth', labels_path,
      '--output', os.path.join(directory, 'out'),
      '--as_of', '2026-01-31T00:00:00Z', '--key_segments', 'age,sex,id',
      '--alert', 'macro_f1<0.5', *beam_args])
  t2 = time.perf_counter()
  print(f'generated {args.rows:,} rows in {t1 - t0:.1f} s; '
        f'evaluated in {t2 - t1:.1f} s = {args.rows / (t2 - t1):,.0f} rows/s '
        f'({os.cpu_count()} cpus, {directory})')


if __name__ == '__main__':
  main()
