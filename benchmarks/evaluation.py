"""Evaluation: a prediction log joined with ground truth and evaluated, in
Beam (`pipelines.evaluate`, FnApiRunner) next to the same computation in
pandas + scikit-learn in one process. Time and peak memory of each.

Rows come from benchmarks.evaluate_throughput's generator (reviews of ~1 KB,
two model versions over 30 days, age/sex key segments, 90% labelled). The
pandas side does what the pipeline does for the default flags: parse both
files, keep each key's latest label, join, threshold the probability at 0.5,
and per (model, version) x time slice (all, each day, week and month, the
last 7 and 30 days) x segment (none, age, sex) count the confusion matrix and
compute per-class precision, recall and F1 with scikit-learn. It writes no
report and checks no alerts, so it is, if anything, the lighter of the two.

  python -m benchmarks.evaluation [--rows 1000000] [--repeats 1]

The last line printed is one JSON object with the figures. Target: Beam under
2 minutes for 1M rows on this machine.
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

from benchmarks import common

AS_OF = '2026-01-31T00:00:00Z'
TARGET_S = 120


def dataset(rows):
  from benchmarks.evaluate_throughput import write_inputs
  folder = os.path.join(common.SCRATCH, f'evaluation-{rows}')
  done = os.path.join(folder, '.complete')
  if not os.path.exists(done):
    os.makedirs(folder, exist_ok=True)
    write_inputs(folder, rows)
    open(done, 'w').close()
  return os.path.join(folder, 'log.jsonl'), os.path.join(folder, 'labels.jsonl')


def child_beam(log, labels):
  from pipelines import evaluate
  output = tempfile.mkdtemp(prefix='bench-eval-', dir=common.SCRATCH)
  try:
    started = time.time()
    code = evaluate.run(['--predictions', log, '--ground_truth', labels,
                         '--output', output, '--as_of', AS_OF,
                         '--key_segments', 'age,sex,id'])
    elapsed = time.time() - started
    if code:
      raise RuntimeError(f'pipelines.evaluate exited with {code}')
  finally:
    shutil.rmtree(output, ignore_errors=True)
  return {'elapsed_s': elapsed}


def child_pandas(log, labels):
  import numpy as np
  import orjson
  import pandas as pd
  from sklearn.metrics import confusion_matrix
  from sklearn.metrics import precision_recall_fscore_support

  started = time.time()
  rows = []
  with open(log, 'rb') as f:
    for line in f:
      r = orjson.loads(line)
      rows.append((r['key'], r['model'], r['model_version'], r['time'],
                   orjson.loads(r['raw_prediction'])['predictions'][0]
                   ['positive_review_probability']))
  preds = pd.DataFrame(rows, columns=['key', 'model', 'model_version', 'time',
                                      'score'])
  del rows
  truth = pd.read_json(labels, lines=True, dtype={'key': str})
  truth = (truth.sort_values('labeled_at')
           .drop_duplicates('key', keep='last')[['key', 'groundtruth']])
  df = preds.merge(truth, on='key', how='inner')
  df['time'] = pd.to_datetime(df['time'], utc=True, format='ISO8601')
  df['predicted'] = np.where(df['score'] >= 0.5, 'positive', 'negative')
  segments = df['key'].str.split('-', n=2, expand=True)
  df['age'], df['sex'] = segments[0], segments[1]
  day = df['time'].dt.tz_localize(None)
  df['day'] = day.dt.strftime('%Y-%m-%d')
  df['week'] = day.dt.strftime('%G-W%V')
  df['month'] = day.dt.strftime('%Y-%m')
  as_of = pd.Timestamp(AS_OF)
  labels_ = ['negative', 'positive']
  metrics = {}

  def evaluate(frame, slice_key):
    y_true, y_pred = frame['groundtruth'], frame['predicted']
    p, r, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels_, zero_division=0)
    metrics[slice_key] = {
        'confusion': confusion_matrix(y_true, y_pred, labels=labels_).tolist(),
        'precision': p.tolist(), 'recall': r.tolist(), 'f1': f1.tolist(),
        'support': support.tolist()}

  times = [('all', None), ('day', 'day'), ('week', 'week'), ('month', 'month')]
  for (model, version), per_version in df.groupby(['model', 'model_version']):
    windows = {f'{d}d': per_version[(per_version['time'] > as_of -
                                     datetime.timedelta(days=d)) &
                                    (per_version['time'] <= as_of)]
               for d in (7, 30)}
    for segment in (None, 'age', 'sex'):
      for name, column in times:
        by = [c for c in (column, segment) if c]
        groups = per_version.groupby(by) if by else [((), per_version)]
        for value, frame in groups:
          evaluate(frame, (model, version, name, value, segment))
      for name, frame in windows.items():
        groups = frame.groupby(segment) if segment else [((), frame)]
        for value, part in groups:
          evaluate(part, (model, version, name, value, segment))
  return {'elapsed_s': time.time() - started, 'joined_rows': len(df),
          'slices': len(metrics)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rows', type=int, default=1_000_000)
  parser.add_argument('--repeats', type=int, default=1)
  parser.add_argument('--child', choices=('beam', 'pandas'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  os.makedirs(common.SCRATCH, exist_ok=True)
  log, labels = dataset(args.rows)
  if args.child:
    run = child_beam if args.child == 'beam' else child_pandas
    print(json.dumps(run(log, labels)))
    return
  print(f'machine: {common.machine()}', flush=True)
  runs = {'beam': [], 'pandas': []}
  for r in range(args.repeats):
    for variant in (('beam', 'pandas') if r % 2 == 0 else ('pandas', 'beam')):
      figures = common.run_child(
          ['-m', 'benchmarks.evaluation', '--child', variant,
           '--rows', str(args.rows)])
      runs[variant].append(figures)
      print(f'  {args.rows:>9,} {variant:<7} run {r + 1}: '
            f'{figures["elapsed_s"]:6.1f} s, peak RSS '
            f'{figures["peak_rss_mb"]:,} MB', flush=True)
  results = {v: {'elapsed_s': round(common.median(
      [f['elapsed_s'] for f in fs]), 1),
                 'peak_rss_mb': max(f['peak_rss_mb'] for f in fs)}
             for v, fs in runs.items()}
  print()
  print(common.table(
      ['rows', 'beam (s)', 'beam peak RSS (MB)', 'pandas+sklearn (s)',
       'pandas peak RSS (MB)', f'beam under {TARGET_S} s'],
      [[f'{args.rows:,}', results['beam']['elapsed_s'],
        results['beam']['peak_rss_mb'], results['pandas']['elapsed_s'],
        results['pandas']['peak_rss_mb'],
        'yes' if results['beam']['elapsed_s'] < TARGET_S else 'NO']]))
  print(json.dumps({'workload': 'evaluation', 'rows': args.rows,
                    'repeats': args.repeats, 'machine': common.machine(),
                    'results': results, 'target_s': TARGET_S,
                    'slices_pandas': runs['pandas'][0].get('slices')}))


if __name__ == '__main__':
  sys.exit(main())
