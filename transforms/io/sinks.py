"""Writes records by format, sharded under an output prefix.

  jsonl    WriteToText, one JSON object per line (`PREFIX-SSSSS-of-NNNNN.jsonl`)
  avro     WriteToAvro with an explicit schema (fastavro)
  parquet  WriteToParquet with an explicit pyarrow schema

Typed formats derive their schema from the records' shape (common.records).
Dead letters are always JSONL: their `raw` field holds whatever the input
was, which no fixed schema can describe. Every job writes its files through
these transforms (and its tables through transforms.io.bigquery, its topics
through transforms.io.pubsub).
"""
import json
import time

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from transforms.io.stale_shards import RemoveStaleShards

OUTPUT_FORMATS = ('jsonl', 'avro', 'parquet')


def to_json(record, sort_keys=False):
  """One JSON line. orjson is several times faster than json.dumps; the
  standard library takes over for what orjson refuses (non-string keys,
  integers over 64 bits). orjson writes NaN as null where json.dumps would
  write the invalid token NaN."""
  try:
    return orjson.dumps(
        record, option=orjson.OPT_SORT_KEYS if sort_keys else 0).decode()
  except TypeError:
    return json.dumps(record, ensure_ascii=False, sort_keys=sort_keys)


class _WriteJsonShards(beam.PTransform):
  """Text lines -> `PREFIX-SSSSS-of-NNNNN.jsonl`, and nothing else under
  that prefix once written (transforms.io.stale_shards)."""

  def __init__(self, prefix, num_shards):
    super().__init__()
    self._prefix, self._num_shards = prefix, num_shards

  def expand(self, lines):
    return (lines
            | 'Write' >> beam.io.WriteToText(
                self._prefix, file_name_suffix='.jsonl',
                num_shards=self._num_shards)
            | 'Remove stale shards' >> RemoveStaleShards(self._prefix,
                                                         '.jsonl'))


class WriteJsonLines(beam.PTransform):
  """Writes dict records as JSON lines: sharded files under `prefix`
  (`PREFIX-SSSSS-of-NNNNN.jsonl`), or with `single_file` the one file
  `prefix` itself (small outputs a person opens, e.g. an evaluation's)."""

  def __init__(self, prefix, num_shards=0, single_file=False,
               sort_keys=False):
    super().__init__()
    self._prefix, self._num_shards = prefix, num_shards
    self._single_file, self._sort_keys = single_file, sort_keys

  def expand(self, records):
    lines = records | 'To JSON' >> beam.Map(to_json, self._sort_keys)
    if self._single_file:
      return lines | 'Write JSONL' >> beam.io.WriteToText(
          self._prefix, num_shards=1, shard_name_template='')
    return lines | 'Write JSONL' >> _WriteJsonShards(self._prefix,
                                                    self._num_shards)


class WriteRecords(beam.PTransform):
  """Writes dict records to `prefix` in `output_format`.

  Args:
    shape: the records' common.schema.Shape, which typed formats (Avro,
      Parquet) derive their schema from.
    num_shards: 0 lets the runner decide.
  """

  def __init__(self, prefix, output_format='jsonl', shape=None, num_shards=0):
    super().__init__()
    if output_format not in OUTPUT_FORMATS:
      raise ValueError(f'unknown output format {output_format!r}')
    if output_format != 'jsonl' and shape is None:
      raise ValueError(f'{output_format} output needs a record shape')
    self._prefix = prefix
    self._format = output_format
    self._shape = shape
    self._num_shards = num_shards

  def expand(self, records):
    if self._format == 'jsonl':
      return records | 'Write' >> WriteJsonLines(self._prefix,
                                                 self._num_shards)
    suffix = f'.{self._format}'
    if self._format == 'avro':
      written = records | 'Write Avro' >> beam.io.WriteToAvro(
          self._prefix, schema=self._shape.avro_schema(),
          file_name_suffix=suffix, num_shards=self._num_shards)
    else:
      written = records | 'Write Parquet' >> beam.io.WriteToParquet(
          self._prefix, schema=self._shape.arrow_schema(),
          file_name_suffix=suffix, num_shards=self._num_shards)
    return written | 'Remove stale shards' >> RemoveStaleShards(
        self._prefix, suffix)


def _json_lines(chunk):
  return '\n'.join(to_json(record) for record in chunk)


class WriteJsonLineChunks(beam.PTransform):
  """WriteRecords(prefix, 'jsonl') for chunks of records
  (transforms.record_chunks), from one PCollection or a tuple of them: the
  same files. Each chunk becomes one string of lines before any merge, so
  the text sink (which writes each element and a newline) and a runner
  materializing the merge handle one element per chunk."""

  def __init__(self, prefix, num_shards=0):
    super().__init__()
    self._prefix, self._num_shards = prefix, num_shards

  def expand(self, chunks):
    parts = chunks if isinstance(chunks, tuple) else (chunks,)
    lines = tuple(part | f'To JSON lines {i}' >> beam.Map(_json_lines)
                  for i, part in enumerate(parts))
    if len(lines) > 1:
      lines = lines | 'Merge' >> beam.Flatten()
    else:
      lines = lines[0]
    return lines | 'Write JSONL' >> _WriteJsonShards(self._prefix,
                                                    self._num_shards)


def _stamped_now(element):
  return TimestampedValue(element, time.time())


class WriteWindowedJsonLines(beam.PTransform):
  """Streaming: dict records (or, with `chunks`, chunks of them) -> one set
  of JSON-lines files per `window_s` seconds under `prefix`
  (`PREFIX-<window start>-<window end>-SSSSS-of-NNNNN.jsonl`, Beam's
  windowed names).

  Windows are by the time a record is written, not its event time: a file
  window closes when the watermark passes its end, and a record stamped
  with an event time already behind the watermark would be dropped as late
  (a record from a client's clock hours behind, a replayed backlog).
  """

  def __init__(self, prefix, window_s, num_shards=1, chunks=False):
    super().__init__()
    if window_s <= 0:
      raise ValueError(f'window_s must be positive, got {window_s}')
    self._prefix, self._window_s = prefix, window_s
    self._num_shards, self._chunks = num_shards, chunks

  def expand(self, records):
    lines = records | 'To JSON' >> beam.Map(
        _json_lines if self._chunks else to_json)
    return (lines
            | 'Stamp write time' >> beam.Map(_stamped_now)
            | 'Write windows' >> beam.io.WriteToText(
                self._prefix, file_name_suffix='.jsonl',
                num_shards=self._num_shards,
                triggering_frequency=self._window_s))


class _CountDeadLetters(beam.DoFn):

  def __init__(self):
    self._total = Metrics.counter('output', 'dead_letters')

  def process(self, record):
    self._total.inc()
    yield record


class WriteDeadLetters(beam.PTransform):
  """Writes the flattened dead letters of every stage as JSONL under
  `prefix`; with `window_s` (streaming) one set of files per window
  (WriteWindowedJsonLines)."""

  def __init__(self, prefix, window_s=None):
    super().__init__()
    self._prefix, self._window_s = prefix, window_s

  def expand(self, dead_letters):
    counted = dead_letters | 'Count' >> beam.ParDo(_CountDeadLetters())
    if self._window_s:
      return counted | 'Write' >> WriteWindowedJsonLines(self._prefix,
                                                         self._window_s)
    return counted | 'Write' >> WriteJsonLines(self._prefix)
