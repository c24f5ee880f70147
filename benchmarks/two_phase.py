"""Two-phase predictions, side by side in one run: records/second of

  raw      a plain Python loop over the texts in memory: phase 1 (the
           quantized .tflite model, tokenizer included) on batches of 512,
           the --forward rule, phase 2 (the SavedModel signature) on batches
           of 256 of what phase 1 forwards (the limit on this machine)
  ours     pipelines.two_phase end to end (read, key, de-duplicate,
           validate, phase 1, route, phase 2, write), one process, default
           flags
  ours_0t  the same with --inference_threads 0 (each model call in the
           worker thread): what overlapping the models with the Python
           steps buys

Same models, same data, same batch sizes, the band of
data/models/two_phase/two_phase.json. Every variant runs in a fresh process;
rates count from pipeline construction (or, for `raw`, from the first batch)
to the end, so TensorFlow's import is never counted and model loading is
counted for the pipelines only. Variants are interleaved (rotated each
repeat); the table shows medians.

  python -m benchmarks.two_phase [--sizes 20000,200000] [--repeats 2]

The last line printed is one JSON object with the figures.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from benchmarks import common

MODELS = 'data/models/two_phase'
PHASE1 = os.path.join(MODELS, 'phase1.tflite')
PHASE2 = os.path.join(MODELS, 'phase2', '1')
PHASE1_BATCH, PHASE2_BATCH = 512, 256
VARIANTS = ('raw', 'ours', 'ours_0t')


def forward_rule():
  with open(os.path.join(MODELS, 'two_phase.json'), encoding='utf-8') as f:
    return json.load(f)['forward']


def child_raw(pattern):
  import tensorflow as tf
  from models.runtime import lite_predictor
  from transforms.two_phase import forwarding
  texts = common.texts(pattern)
  rule = forwarding.parse_rule(forward_rule())
  phase1 = lite_predictor.load(PHASE1)
  phase2 = tf.saved_model.load(PHASE2).signatures['serving_default']
  started = time.time()
  forwarded = []
  for i in range(0, len(texts), PHASE1_BATCH):
    batch = texts[i:i + PHASE1_BATCH]
    scores = phase1.predict_ids(phase1.tokenizer.encode(batch)).tolist()
    forwarded.extend(text for text, score in zip(batch, scores)
                     if rule.phase1_decision(score) is None)
  for i in range(0, len(forwarded), PHASE2_BATCH):
    outputs = phase2(reviews=tf.constant(forwarded[i:i + PHASE2_BATCH]))
    _ = {name: t.numpy() for name, t in outputs.items()}
  return {'records': len(texts), 'forwarded': len(forwarded),
          'elapsed_s': time.time() - started}


def child_ours(pattern, threads):
  from pipelines import two_phase
  output_dir = tempfile.mkdtemp(prefix='bench-2p-', dir=common.SCRATCH)
  argv = ['--input', pattern, '--phase1_model', PHASE1,
          '--phase2_model_dir', PHASE2, '--forward', forward_rule(),
          '--phase1_batch_size', str(PHASE1_BATCH),
          '--phase2_batch_size', str(PHASE2_BATCH),
          '--output', os.path.join(output_dir, 'decisions')]
  if threads is not None:
    argv += ['--inference_threads', str(threads)]
  try:
    figures = two_phase.run(argv)
  finally:
    shutil.rmtree(output_dir, ignore_errors=True)
  if not figures['reconciled'] or figures['dead_letters'] or figures['pending']:
    raise RuntimeError(f'unexpected pending or dead letters: {figures}')
  return {'records': figures['inputs'], 'forwarded': figures['forwarded'],
          'elapsed_s': figures['elapsed_s']}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--sizes', default='20000,200000')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
  parser.add_argument('--input', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    import tensorflow  # noqa: F401  a library import, never counted
    figures = (child_raw(args.input) if args.child == 'raw' else
               child_ours(args.input, 0 if args.child == 'ours_0t' else None))
    print(json.dumps(figures), flush=True)
    return 0
  if not os.path.exists(os.path.join(MODELS, 'two_phase.json')):
    sys.exit(f'no two-phase models under {MODELS}: run '
             '`make two-phase-models` first')
  os.makedirs(common.SCRATCH, exist_ok=True)
  print(f'machine: {common.machine()}', flush=True)
  sizes = [int(n) for n in args.sizes.split(',') if n]
  measured = [(v, n) for n in sizes for v in VARIANTS]
  runs = {m: [] for m in measured}
  for r in range(args.repeats):
    order = measured[r % len(measured):] + measured[:r % len(measured)]
    for variant, n in order:
      figures = common.run_child(['-m', 'benchmarks.two_phase', '--child',
                                  variant, '--input',
                                  common.scratch_dataset(n)])
      figures['records_per_s'] = n / figures['elapsed_s']
      runs[(variant, n)].append(figures)
      print(f'  {n:>9,} {variant:<8} run {r + 1}: '
            f'{figures["records_per_s"]:9,.0f} records/s, '
            f'{figures["forwarded"]:,} forwarded, peak RSS '
            f'{figures["peak_rss_mb"]:,} MB', flush=True)
  results = {}
  for (variant, n), figures in runs.items():
    results.setdefault(str(n), {})[variant] = {
        'records_per_s': round(common.median(
            [f['records_per_s'] for f in figures])),
        'all_records_per_s': [round(f['records_per_s']) for f in figures],
        'forwarded': figures[0]['forwarded'],
        'peak_rss_mb': max(f['peak_rss_mb'] for f in figures)}
  rows = []
  for n in sizes:
    r = results[str(n)]
    rate = {v: r[v]['records_per_s'] for v in VARIANTS}
    r['ours_over_raw'] = round(rate['ours'] / rate['raw'], 2)
    r['ours_over_ours_0t'] = round(rate['ours'] / rate['ours_0t'], 2)
    rows.append([f'{n:,}', f'{r["raw"]["forwarded"]:,}', rate['raw'],
                 rate['ours'], rate['ours_0t'], r['ours_over_raw'],
                 r['ours_over_ours_0t'],
                 '/'.join(str(r[v]['peak_rss_mb']) for v in VARIANTS)])
  print()
  print(common.table(
      ['records', 'forwarded', 'raw', 'ours', 'ours, 0 threads', 'ours/raw',
       'ours/ours 0 threads', 'peak RSS MB (raw/ours/0t)'], rows))
  print(json.dumps({'workload': 'two_phase', 'repeats': args.repeats,
                    'forward': forward_rule(), 'machine': common.machine(),
                    'results': results}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
