"""Batch inference, side by side in one run: records/second of

  raw      a plain Python loop calling the SavedModel signature on batches
           (texts already in memory; the limit on this machine)
  raw_1c   raw pinned to one core (as ours_1c): the one-core limit
  stock    Beam's stock RunInference + TFModelHandlerTensor, set up the way
           Beam's docs show (read JSONL, key, one tf.constant per element,
           KeyedModelHandler, write JSONL), with the two changes it needs to
           load our SavedModel: TF_USE_LEGACY_KERAS=1 (its loader is
           tf.keras.models.load_model, which Keras 3 refuses for SavedModels)
           and an inference_fn calling the `serving_default` signature (its
           default fn calls model(batch), which a signature-only SavedModel
           does not support)
  ours     pipelines.batch_predict end to end (read, key, de-duplicate,
           validate, infer, format, write), one process, default flags
  ours_1c  ours pinned to one core (CPU affinity, set before TensorFlow or
           Beam is imported; batch_predict then sizes its defaults for one
           core):
           ours / ours_1c is what the second core buys, ours_1c / raw_1c
           what the pipeline costs on one core
  ours_unique  ours with --allow_duplicate_keys (keys known to be unique):
           what the duplicate-key check, a pass over the keys before any
           record reaches the model, costs
  ours_2w  the same with --direct_num_workers=2 (which batch_predict runs
           as two worker threads in one process: pipelines/launch.py)
  ours_2p  the same with --direct_num_workers=2
           --direct_running_mode=multi_processing (two worker processes,
           Dataflow's shape: a process per core), which by default share
           one model (--share_model auto)
  ours_2p_copies  ours_2p with --share_model=false: a model per process

Same model, same data, same batch size. Every variant runs in a fresh
process; rates count from pipeline construction (or, for `raw`, from the
first batch) to the end, so TensorFlow's import is never counted and model
loading and Beam's worker start-up are counted for the pipelines only.
Variants are interleaved (rotated each repeat) because the machine may be
shared; the table shows medians.

  python -m benchmarks.batch_inference [--sizes 20000,200000,1000000]
      [--repeats 2] [--repeats_1m 1]
      [--variants raw,raw_1c,stock,ours,ours_1c,ours_unique,ours_2w,ours_2p,
                  ours_2p_copies]

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

MODEL_DIR = 'data/models/sentiment/1'
VARIANTS = ('raw', 'raw_1c', 'stock', 'ours', 'ours_1c', 'ours_unique',
            'ours_2w', 'ours_2p', 'ours_2p_copies')
PINNED = ('raw_1c', 'ours_1c')
TWO_PROCESSES = ['--direct_num_workers=2',
                 '--direct_running_mode=multi_processing']
WORKER_FLAGS = {
    'ours': [], 'ours_1c': [], 'ours_unique': ['--allow_duplicate_keys'],
    'ours_2w': ['--direct_num_workers=2'],
    'ours_2p': TWO_PROCESSES,
    'ours_2p_copies': TWO_PROCESSES + ['--share_model=false']}
TARGETS = {'ours/raw at 20k': 0.7, 'ours/raw at 200k': 0.95,
           'ours/raw at 1M': 1.0, 'ours/stock': 2.0, 'ours_1c/raw_1c': 0.9,
           'ours_2p/ours at 200k': 0.9, 'ours_2p RSS/ours RSS': 1.3}


def child_raw(pattern, batch_size, model_dir):
  import tensorflow as tf
  texts = common.texts(pattern)
  fn = tf.saved_model.load(model_dir).signatures['serving_default']
  started = time.time()
  for i in range(0, len(texts), batch_size):
    outputs = fn(reviews=tf.constant(texts[i:i + batch_size]))
    _ = {name: t.numpy() for name, t in outputs.items()}
  return {'records': len(texts), 'elapsed_s': time.time() - started}


def child_stock(pattern, batch_size, model_dir, output):
  import apache_beam as beam
  import tensorflow as tf
  from apache_beam.ml.inference import utils
  from apache_beam.ml.inference.base import KeyedModelHandler
  from apache_beam.ml.inference.base import RunInference
  from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor
  from apache_beam.options.pipeline_options import PipelineOptions

  def signature_inference_fn(model, batch, inference_args, model_id=None):
    # Beam's default_tensor_inference_fn with model(...) replaced by the
    # signature call; the rest (tf.stack, _convert_to_result) is Beam's own.
    predictions = model.signatures['serving_default'](
        reviews=tf.stack(batch, axis=0), **inference_args)
    return utils._convert_to_result(batch, predictions, model_id)  # pylint: disable=protected-access

  def to_json(element):
    key, result = element
    return json.dumps({'key': key, 'predictions': {
        name: float(value[0]) for name, value in result.inference.items()}})

  handler = TFModelHandlerTensor(
      model_dir, inference_fn=signature_inference_fn,
      min_batch_size=batch_size, max_batch_size=batch_size)
  started = time.time()
  with beam.Pipeline(options=PipelineOptions(['--runner=FnApiRunner'])) as p:
    _ = (p
         | beam.io.ReadFromText(pattern)
         | beam.Map(json.loads)
         | beam.Map(lambda r: (r['key'], tf.constant(r['text'])))
         | RunInference(KeyedModelHandler(handler))
         | beam.Map(to_json)
         | beam.io.WriteToText(output, file_name_suffix='.jsonl'))
  return {'elapsed_s': time.time() - started}


def child_ours(pattern, batch_size, model_dir, output, worker_flags):
  from pipelines import batch_predict
  argv = ['--input', pattern, '--feature_map', 'reviews=text',
          '--model_dir', model_dir, '--output', output,
          '--batch_size', str(batch_size)] + worker_flags
  figures = batch_predict.run(argv)
  if not figures['reconciled'] or figures['dead_letters']:
    raise RuntimeError(f'unexpected dead letters: {figures}')
  return {'records': figures['predictions'], 'elapsed_s': figures['elapsed_s']}


def run_child(args):
  if args.child in PINNED:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  output_dir = tempfile.mkdtemp(prefix='bench-out-', dir=common.SCRATCH)
  output = os.path.join(output_dir, 'predictions')
  try:
    if args.child in ('raw', 'raw_1c'):
      figures = child_raw(args.input, args.batch_size, args.model_dir)
    elif args.child == 'stock':
      figures = child_stock(args.input, args.batch_size, args.model_dir, output)
    else:
      figures = child_ours(args.input, args.batch_size, args.model_dir, output,
                           WORKER_FLAGS[args.child])
  finally:
    shutil.rmtree(output_dir, ignore_errors=True)
  print(json.dumps(figures))


def measure(variant, pattern, n, args):
  env = {'TF_USE_LEGACY_KERAS': '1'} if variant == 'stock' else {}
  figures = common.run_child(
      ['-m', 'benchmarks.batch_inference', '--child', variant,
       '--input', pattern, '--batch_size', str(args.batch_size),
       '--model_dir', args.model_dir], env=env)
  figures['records_per_s'] = n / figures['elapsed_s']
  return figures


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--sizes', default='20000,200000,1000000')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--repeats_1m', type=int, default=1,
                      help='Repeats for sizes of 1M records and more.')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument(
      '--variants_1m', default='raw,ours,ours_1c,ours_2w,ours_2p',
      help='Variants for sizes of 1M records and more (stock, at about 1k '
      'records/s here, would take over 15 minutes).')
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--model_dir', default=MODEL_DIR)
  parser.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
  parser.add_argument('--input', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  os.makedirs(common.SCRATCH, exist_ok=True)
  if args.child:
    return run_child(args)

  variants = [v for v in args.variants.split(',') if v]
  print(f'machine: {common.machine()}', flush=True)
  results = {}
  for n in [int(s) for s in args.sizes.split(',')]:
    pattern = common.scratch_dataset(n)
    big = n >= 1_000_000
    repeats = args.repeats_1m if big else args.repeats
    chosen = ([v for v in args.variants_1m.split(',') if v in variants]
              if big else variants)
    runs = {v: [] for v in chosen}
    for r in range(repeats):
      order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
      for v in order:
        figures = measure(v, pattern, n, args)
        runs[v].append(figures)
        print(f'  {n:>9,} {v:<8} run {r + 1}: '
              f'{figures["records_per_s"]:>9,.0f} rec/s, '
              f'{figures["elapsed_s"]:6.1f} s, '
              f'peak RSS {figures["peak_rss_mb"]:,} MB', flush=True)
    results[n] = {v: {
        'records_per_s': round(common.median(
            [f['records_per_s'] for f in runs[v]])),
        'all_records_per_s': [round(f['records_per_s']) for f in runs[v]],
        'peak_rss_mb': max(f['peak_rss_mb'] for f in runs[v]),
    } for v in chosen}

  rows, ratios = [], {}
  ratio_names = ('ours/raw', 'ours/stock', 'ours/ours_1c', 'ours_1c/raw_1c',
                 'ours_unique/ours', 'ours_2w/ours', 'ours_2p/ours',
                 'ours_2p RSS/ours RSS',
                 'ours_2p_copies/ours')
  for n, by_variant in results.items():
    rate = {v: by_variant[v]['records_per_s'] for v in by_variant}
    rss = {v: by_variant[v]['peak_rss_mb'] for v in by_variant}

    def ratio(a, b, of=rate):
      return round(of[a] / of[b], 2) if a in of and b in of else None
    ratios[n] = {name: ratio(*name.replace(' RSS', '').split('/'),
                             of=rss if 'RSS' in name else rate)
                 for name in ratio_names}
    rows.append([f'{n:,}'] + [
        f'{rate[v]:,} ({rss[v]:,} MB)' if v in rate else 'not run'
        for v in variants
    ] + [ratios[n][k] for k in ratio_names])
  print()
  print(common.table(
      ['records'] + [f'{v} rec/s (peak RSS)' for v in variants] +
      list(ratio_names), rows))
  print(json.dumps({
      'workload': 'batch_inference', 'batch_size': args.batch_size,
      'repeats': args.repeats, 'repeats_1m': args.repeats_1m,
      'machine': common.machine(), 'results': results, 'ratios': ratios,
      'targets': TARGETS}))


if __name__ == '__main__':
  sys.exit(main())
