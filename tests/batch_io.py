"""Writes test inputs in every format and reads pipeline outputs back."""
import csv
import glob
import json

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq


def write_shards(directory, rows, fmt, num_shards=3):
  """Writes dict rows sharded as `fmt` under `directory`; returns a glob."""
  directory.mkdir(parents=True, exist_ok=True)
  ext = {'text': 'txt'}.get(fmt, fmt)
  for i in range(num_shards):
    shard = rows[i::num_shards]
    path = directory / f'part-{i:05d}-of-{num_shards:05d}.{ext}'
    if fmt == 'jsonl':
      path.write_text(''.join(json.dumps(r) + '\n' for r in shard))
    elif fmt == 'text':
      path.write_text(''.join(r['text'] + '\n' for r in shard))
    elif fmt == 'csv':
      with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(shard)
    elif fmt == 'avro':
      schema = {'type': 'record', 'name': 'R', 'fields': [
          {'name': k, 'type': 'string'} for k in rows[0]]}
      with open(path, 'wb') as f:
        fastavro.writer(f, schema, shard)
    elif fmt == 'parquet':
      pq.write_table(pa.Table.from_pylist(shard), path)
    elif fmt == 'tfrecord':
      import tensorflow as tf
      with tf.io.TFRecordWriter(str(path)) as writer:
        for r in shard:
          writer.write(tf.train.Example(features=tf.train.Features(feature={
              k: tf.train.Feature(bytes_list=tf.train.BytesList(
                  value=[v.encode()])) for k, v in r.items()})).SerializeToString())
  return str(directory / f'part-*.{ext}')


def read_jsonl(prefix):
  rows = []
  for path in sorted(glob.glob(prefix + '-[0-9]*')):
    with open(path, encoding='utf-8') as f:
      rows += [json.loads(line) for line in f if line.strip()]
  return rows


def read_avro(prefix):
  rows = []
  for path in sorted(glob.glob(prefix + '-[0-9]*.avro')):
    with open(path, 'rb') as f:
      rows += list(fastavro.reader(f))
  return rows


def read_parquet(prefix):
  rows = []
  for path in sorted(glob.glob(prefix + '-[0-9]*.parquet')):
    rows += pq.read_table(path).to_pylist()
  return rows
