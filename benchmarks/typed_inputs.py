"""batch_predict over Avro and Parquet shards: records/second of the read a
file at a time (transforms/io/sources.py, which survives a damaged file)
against the code of another checkout (e.g. one before that change, with
Beam's ReadFromAvro / ReadFromParquet), same data, same model.

  python -m benchmarks.typed_inputs --other_root /path/to/other/checkout
      [--records 100000] [--shards 8] [--repeats 2] [--formats avro,parquet]

Each run is a fresh child process; variants are interleaved (the machine may
be shared) and the table shows medians. The last line printed is one JSON
object with the figures.
"""
import argparse
import json
import os
import sys
import time

from benchmarks import common

MODEL = 'data/models/sentiment/1'


def write_shards(fmt, n, num_shards):
  """`n` demo reviews with fresh keys as `num_shards` files of `fmt`,
  written once under common.SCRATCH; a file pattern."""
  folder = os.path.join(common.SCRATCH, f'typed-{fmt}-{n}-{num_shards}')
  pattern = os.path.join(folder, f'*.{fmt}')
  done = os.path.join(folder, '.complete')
  if os.path.exists(done):
    return pattern
  os.makedirs(folder, exist_ok=True)
  demo = common.demo_records()
  rows = [{'key': f'r{i:08d}', 'text': demo[i % len(demo)]['text']}
          for i in range(n)]
  for s in range(num_shards):
    shard = rows[s::num_shards]
    path = os.path.join(folder, f'part-{s:05d}-of-{num_shards:05d}.{fmt}')
    if fmt == 'avro':
      import fastavro  # pylint: disable=import-outside-toplevel
      schema = {'type': 'record', 'name': 'Review', 'fields': [
          {'name': 'key', 'type': 'string'},
          {'name': 'text', 'type': 'string'}]}
      with open(path, 'wb') as f:
        fastavro.writer(f, schema, shard)
    else:
      import pyarrow as pa  # pylint: disable=import-outside-toplevel
      import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
      pq.write_table(pa.Table.from_pylist(shard), path)
  open(done, 'w').close()
  return pattern


def child(root, pattern, output):
  """Runs batch_predict from `root`'s code; prints its figures as JSON."""
  sys.path.insert(0, root)
  from pipelines import batch_predict  # pylint: disable=import-outside-toplevel
  started = time.time()
  figures = batch_predict.run([
      '--input', pattern, '--model_dir', MODEL, '--feature_map',
      'reviews=text', '--output', output])
  figures['measured_s'] = round(time.time() - started, 2)
  print(json.dumps(figures))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--other_root', required=True)
  parser.add_argument('--records', type=int, default=100_000)
  parser.add_argument('--shards', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--formats', default='avro,parquet')
  parser.add_argument('--child', nargs=3, metavar=('ROOT', 'INPUT', 'OUT'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(*args.child)
    return
  print(common.machine())
  roots = {'this': os.getcwd(), 'other': os.path.abspath(args.other_root)}
  rates = {}
  for fmt in args.formats.split(','):
    pattern = write_shards(fmt, args.records, args.shards)
    for repeat in range(args.repeats):
      order = list(roots) if repeat % 2 == 0 else list(roots)[::-1]
      for name in order:
        out = os.path.join(common.SCRATCH, f'typed-out-{name}', 'predictions')
        figures = common.run_child(
            ['-m', 'benchmarks.typed_inputs', '--other_root', roots['other'],
             '--child', roots[name], pattern, out],
            env={'PYTHONPATH': roots[name]})
        assert figures['predictions'] == args.records, figures
        rates.setdefault((fmt, name), []).append(
            args.records / figures['measured_s'])
  rows = [(fmt, name, common.median(r)) for (fmt, name), r in rates.items()]
  print(common.table(['format', 'code', 'records/s (median)'], rows))
  print(json.dumps({f'{fmt}/{name}': round(rate, 1)
                    for fmt, name, rate in rows}))


if __name__ == '__main__':
  main()
