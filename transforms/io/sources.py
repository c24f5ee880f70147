"""Sharded reads by format, each yielding plain dict records.

Every format ends in the same shape (one dict per input record) so the rest of
a pipeline never cares where records came from. Records that cannot be decoded
leave on the dead-letter output with reason `unparseable` and the raw line or
bytes, and every record read (decoded or not) is counted as
`read/records`, the "inputs" of inputs = outputs + dead letters.

Formats and the Beam source behind each:
  jsonl    ReadFromText + json.loads (one JSON object per line)
  text     ReadFromText; each line becomes {"text": line}
  csv      fileio.MatchFiles/ReadMatches + csv.DictReader (header row; quoted
           fields may span lines, which a line-based reader would split)
  avro     ReadFromAvro (fastavro)
  parquet  ReadFromParquet (pyarrow)
  tfrecord ReadFromTFRecord of serialized tf.train.Example protos
"""
import csv
import io
import json
import os

import apache_beam as beam
import orjson
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import merge
from transforms.dead_letter import reject

FORMATS = ('jsonl', 'csv', 'avro', 'parquet', 'tfrecord', 'text')
_EXTENSIONS = {
    '.jsonl': 'jsonl', '.json': 'jsonl', '.ndjson': 'jsonl',
    '.csv': 'csv', '.avro': 'avro', '.parquet': 'parquet',
    '.tfrecord': 'tfrecord', '.tfrecords': 'tfrecord', '.txt': 'text',
}
STAGE = 'read'
RECORDS = 'records'


def infer_format(pattern):
  """The format implied by a file pattern's extension, or None."""
  base = pattern.rsplit('/', 1)[-1]
  for suffix in ('.gz', '.bz2', '.deflate', '.zst'):
    if base.endswith(suffix):
      base = base[:-len(suffix)]
  return _EXTENSIONS.get(os.path.splitext(base)[1].lower())


def records_counter():
  """The `read/records` counter: every record read, decoded or not."""
  return Metrics.counter(STAGE, RECORDS)


def _loads(line):
  """orjson (several times faster) for the common case; the standard library
  for what orjson refuses but Python's JSON accepts (NaN, huge integers), so
  the choice of parser never changes which lines are dead letters."""
  try:
    return orjson.loads(line)
  except orjson.JSONDecodeError:
    return json.loads(line)


def parse_json_line(line):
  """(record, None) for a line holding one JSON object, else (None, why not).
  `line` is str or UTF-8 bytes."""
  try:
    record = _loads(line)
  except ValueError as e:  # also UnicodeDecodeError, for bytes
    return None, f'invalid JSON: {e}'
  if not isinstance(record, dict):
    return None, f'expected a JSON object, got {type(record).__name__}'
  return record, None


class _ParseJsonLines(beam.DoFn):
  def __init__(self):
    self._records = records_counter()

  def process(self, line):
    self._records.inc()
    record, problem = parse_json_line(line)
    if problem:
      yield reject(None, STAGE, 'unparseable', line, problem)
      return
    yield record


class _TextLines(beam.DoFn):
  def __init__(self):
    self._records = records_counter()

  def process(self, line):
    self._records.inc()
    yield {'text': line}


class _CountDicts(beam.DoFn):
  """Counts records from decoders that already yield dicts (Avro, Parquet)."""

  def __init__(self):
    self._records = records_counter()

  def process(self, record):
    self._records.inc()
    yield record


class _ParseCsvFile(beam.DoFn):
  """Reads one CSV file with its header; rows whose field count differs from
  the header are schema mismatches and go to the dead letter."""

  def __init__(self):
    self._records = records_counter()

  def process(self, readable_file):
    path = readable_file.metadata.path
    with readable_file.open() as f:
      text = io.TextIOWrapper(f, encoding='utf-8', newline='')
      reader = csv.DictReader(text)
      for row in reader:
        self._records.inc()
        if None in row or None in row.values():
          yield reject(
              None, STAGE, 'unparseable', row,
              f'{path} line {reader.line_num}: {len(reader.fieldnames)} '
              'columns in the header, a different number in this row')
          continue
        yield row


class _ParseTFExample(beam.DoFn):
  """Decodes serialized tf.train.Example protos into dicts.

  A feature with one value becomes a scalar, several a list; bytes features
  become str when they are valid UTF-8.
  """

  def __init__(self):
    self._records = records_counter()

  def setup(self):
    from tensorflow.core.example import example_pb2
    self._example = example_pb2.Example

  def process(self, serialized):
    self._records.inc()
    try:
      example = self._example.FromString(serialized)
    except Exception as e:  # protobuf raises DecodeError, a bare Exception
      yield reject(None, STAGE, 'unparseable', serialized,
                   f'not a tf.train.Example: {e}')
      return
    record = {}
    for name, feature in example.features.feature.items():
      kind = feature.WhichOneof('kind')
      values = list(getattr(feature, kind).value) if kind else []
      if kind == 'bytes_list':
        values = [_maybe_text(v) for v in values]
      record[name] = values[0] if len(values) == 1 else values
    yield record


def _maybe_text(value):
  try:
    return value.decode('utf-8')
  except UnicodeDecodeError:
    return value


class ReadRecords(beam.PTransform):
  """Reads file patterns of one format into dict records; returns `Routed`."""

  def __init__(self, patterns, input_format):
    super().__init__()
    if input_format not in FORMATS:
      raise ValueError(f'unknown input format {input_format!r}')
    self._patterns = [patterns] if isinstance(patterns, str) else patterns
    self._format = input_format

  def _read(self, pbegin, i, pattern):
    label = f'{self._format}[{i}]'
    fmt = self._format
    if fmt in ('jsonl', 'text'):
      decoded = pbegin | f'Lines {label}' >> beam.io.ReadFromText(
          pattern, validate=False)
      parse = _ParseJsonLines() if fmt == 'jsonl' else _TextLines()
    elif fmt == 'csv':
      decoded = (pbegin
                 | f'Match {label}' >> fileio.MatchFiles(pattern)
                 | f'Open {label}' >> fileio.ReadMatches())
      parse = _ParseCsvFile()
    elif fmt == 'tfrecord':
      decoded = pbegin | f'Read {label}' >> beam.io.ReadFromTFRecord(
          pattern, validate=False)
      parse = _ParseTFExample()
    else:
      read = beam.io.ReadFromAvro if fmt == 'avro' else beam.io.ReadFromParquet
      decoded = pbegin | f'Read {label}' >> read(pattern, validate=False)
      parse = _CountDicts()
    return decoded | f'Parse {label}' >> RoutedParDo(parse)

  def expand(self, pbegin):
    return merge(
        (self._read(pbegin, i, p) for i, p in enumerate(self._patterns)),
        'Read')
