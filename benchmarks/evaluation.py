"""Evaluation: a prediction log joined with ground truth and evaluated, in
Beam (`pipelines.evaluate`, FnApiRunner) next to the same computation in
pandas + scikit-learn in one process. Time and peak memory of each.

Rows come from benchmarks.evaluate_throughput's generator (reviews of ~1 KB,
two model versions over 30 days, age/sex key segments, 90% labelled). The
pandas side does what the pipeline does for the default flags: parse both
files, keep each key's latest label, join, threshold the probability at 0.5,
and per (model, version) x time slice (all, each day, week and month, the
last 7 and 30 days) x segment (none, age, sex) count the confusion matrix and
compute per-class precision, recall and F1 with scikit-learn, and the Brier
score and calibration curve (scikit-learn's brier_score_loss,
calibration_curve); and the drift: per (version, day) the histogram of each
statistic (review length in characters and tokens, the probability) over
the baseline's bins, and its PSI, Jensen-Shannon distance (scipy) and KS
against the baseline. The Beam side gets the same baseline
(baseline_stats.json, built by common.feature_stats from the first
BASELINE_ROWS scores and reviews cut to varied lengths) and --window 1d. It
writes no report and checks no alerts, so it is, if anything, the lighter of
the two. --no_drift measures the workload without drift (the figures of
RESULTS.md before drift existed).

  python -m benchmarks.evaluation [--rows 1000000] [--repeats 1] [--no_drift]

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
BASELINE_ROWS = 20_000


def dataset(rows):
  from benchmarks.evaluate_throughput import write_inputs
  folder = os.path.join(common.SCRATCH, f'evaluation-{rows}')
  done = os.path.join(folder, '.complete')
  if not os.path.exists(done):
    os.makedirs(folder, exist_ok=True)
    write_inputs(folder, rows)
    open(done, 'w').close()
  return os.path.join(folder, 'log.jsonl'), os.path.join(folder, 'labels.jsonl')


def baseline(log):
  """baseline_stats.json beside the log: the first BASELINE_ROWS rows'
  scores, their reviews cut to lengths varied by the row (the generator's
  reviews are all one text, which would make a category of them)."""
  import random

  import orjson

  from common import feature_stats
  path = os.path.join(os.path.dirname(log), feature_stats.FILE_NAME)
  if os.path.exists(path):
    return path
  rng = random.Random(1)
  profiles = []
  with open(log, 'rb') as f:
    for _, line in zip(range(BASELINE_ROWS), f):
      row = orjson.loads(line)
      text = orjson.loads(row['raw_data'])['instances'][0]['reviews']
      profiles.append(feature_stats.profile(
          {'reviews': text[:rng.randint(len(text) // 2, len(text))]},
          orjson.loads(row['raw_prediction'])['predictions'][0]))
  with open(path, 'w') as f:
    f.write(feature_stats.dumps(feature_stats.build_baseline(
        profiles, {'positive_review_probability'}, None,
        'benchmarks.evaluation')))
  return path


def child_beam(log, labels, drift):
  from pipelines import evaluate
  output = tempfile.mkdtemp(prefix='bench-eval-', dir=common.SCRATCH)
  extra = (['--baseline', baseline(log), '--window', '1d',
            '--drift', 'psi>0.2'] if drift else [])
  try:
    started = time.time()
    code = evaluate.run(['--predictions', log, '--ground_truth', labels,
                         '--output', output, '--as_of', AS_OF,
                         '--key_segments', 'age,sex,id', *extra])
    elapsed = time.time() - started
    if code:
      raise RuntimeError(f'pipelines.evaluate exited with {code}')
  finally:
    shutil.rmtree(output, ignore_errors=True)
  return {'elapsed_s': elapsed}


def pandas_drift(preds, spec_of):
  """Per (model, version, day): each statistic's histogram over the
  baseline's bins and its PSI, JS distance and KS against the baseline."""
  import numpy as np
  from scipy.spatial import distance
  day = preds['time'].str.slice(0, 10)  # ISO-8601 UTC: the UTC day
  out = {}
  for name, values in (('reviews_chars', preds['chars']),
                       ('reviews_tokens', preds['tokens']),
                       ('positive_review_probability', preds['score'])):
    spec = spec_of[name]
    reference = np.asarray(spec['counts'], dtype=float)
    reference /= reference.sum()
    bins = np.digitize(values.to_numpy(), spec['edges'])
    frame = preds[['model', 'model_version']].assign(day=day, bin=bins)
    counts = frame.groupby(['model', 'model_version', 'day', 'bin']).size()
    for key, histogram in counts.groupby(level=[0, 1, 2]):
      current = np.zeros(len(reference))
      current[histogram.index.get_level_values('bin')] = histogram.to_numpy()
      current /= current.sum()
      a, b = np.maximum(current, 1e-4), np.maximum(reference, 1e-4)
      out[key + (name,)] = {
          'psi': float(np.sum((a - b) * np.log(a / b))),
          'js': float(distance.jensenshannon(reference, current, base=2)),
          'ks': float(np.max(np.abs(np.cumsum(current)
                                    - np.cumsum(reference))))}
  return out


def child_pandas(log, labels, drift):
  import numpy as np
  import orjson
  import pandas as pd
  from sklearn.calibration import calibration_curve
  from sklearn.metrics import brier_score_loss
  from sklearn.metrics import confusion_matrix
  from sklearn.metrics import precision_recall_fscore_support

  spec_of = None
  if drift:
    with open(baseline(log)) as f:
      spec_of = json.load(f)['statistics']
  started = time.time()
  rows = []
  with open(log, 'rb') as f:
    for line in f:
      r = orjson.loads(line)
      rows.append((r['key'], r['model'], r['model_version'], r['time'],
                   orjson.loads(r['raw_prediction'])['predictions'][0]
                   ['positive_review_probability'],
                   orjson.loads(r['raw_data'])['instances'][0]['reviews']
                   if drift else ''))
  preds = pd.DataFrame(rows, columns=['key', 'model', 'model_version', 'time',
                                      'score', 'text'])
  del rows
  drift_figures = {}
  if drift:
    preds['chars'] = preds['text'].str.len()
    # Tokens counted, not materialised: lists of 1M x ~180 strings would
    # cost gigabytes.
    preds['tokens'] = (preds['text'].str.lower()
                       .str.replace(r'[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~\']',
                                    '', regex=True)
                       .str.count(r'\S+'))
    drift_figures = pandas_drift(preds, spec_of)
  preds = preds.drop(columns=['text'])
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
    if drift:
      is_pos = y_true == 'positive'
      metrics[slice_key]['brier'] = brier_score_loss(is_pos, frame['score'])
      if is_pos.nunique() == 2:
        metrics[slice_key]['calibration'] = [c.tolist() for c in (
            calibration_curve(is_pos, frame['score'], n_bins=10))]

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
          'slices': len(metrics), 'drift_histograms': len(drift_figures)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rows', type=int, default=1_000_000)
  parser.add_argument('--repeats', type=int, default=1)
  parser.add_argument('--no_drift', action='store_true',
                      help='The workload without drift and calibration.')
  parser.add_argument('--child', choices=('beam', 'pandas'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  os.makedirs(common.SCRATCH, exist_ok=True)
  log, labels = dataset(args.rows)
  if args.child:
    run = child_beam if args.child == 'beam' else child_pandas
    print(json.dumps(run(log, labels, not args.no_drift)))
    return
  print(f'machine: {common.machine()}', flush=True)
  runs = {'beam': [], 'pandas': []}
  for r in range(args.repeats):
    for variant in (('beam', 'pandas') if r % 2 == 0 else ('pandas', 'beam')):
      figures = common.run_child(
          ['-m', 'benchmarks.evaluation', '--child', variant,
           '--rows', str(args.rows)]
          + (['--no_drift'] if args.no_drift else []))
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
  print(json.dumps({'workload': 'evaluation' if args.no_drift else
                    'evaluation with drift and calibration',
                    'rows': args.rows,
                    'repeats': args.repeats, 'machine': common.machine(),
                    'results': results, 'target_s': TARGET_S,
                    'slices_pandas': runs['pandas'][0].get('slices'),
                    'drift_histograms_pandas': runs['pandas'][0].get(
                        'drift_histograms')}))


if __name__ == '__main__':
  sys.exit(main())
