"""Sharded reads by format, each yielding plain dict records.

Every format ends in the same shape (one dict per input record) so the rest of
a pipeline never cares where records came from. Records that cannot be decoded
leave on the dead-letter output with the raw line or bytes (bytes that are not
text as base64, flagged: common/records/dead_letter.py), and every record
read (decoded or not) is counted as `read/records`, the "inputs" of
inputs = outputs + dead letters. Reasons: `unparseable` (not JSON, a CSV row
that does not fit its header), `invalid_text` (bytes that are not UTF-8, or a
lone surrogate), `unreadable_file` (see below).

Formats and the Beam source behind each:
  jsonl    ReadFromText as bytes + JSON (one JSON object per line)
  text     ReadFromText as bytes; each line becomes {"text": line}
  csv      fileio.MatchFiles/ReadMatches + csv (header row; quoted fields
           may span lines, which a line-based reader would split); see
           csv_records
  avro     fileio + fastavro, a file at a time
  parquet  fileio + pyarrow, a file (a row group at a time) per worker
  tfrecord fileio + TFRecord framing, serialized tf.train.Example protos

Typed files are read a file at a time, not by Beam's splittable sources,
so that a truncated or corrupt file is the dead letter of that file, not a
failure of the job: its records up to the damage are served, and what
follows is one `unreadable_file` dead letter naming the file and the error
(counted as one input, and as `read/unreadable_files`, which the summaries
print). The cost: one worker reads each file; shards, not byte ranges,
are the unit of parallelism for these formats.
"""
import csv
import io
import json
import os
import sys

import apache_beam as beam
import orjson
from apache_beam.coders import BytesCoder
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from common.unicode_text import has_lone_surrogate
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
UNREADABLE_FILES = 'unreadable_files'
HEADER_LINES = 'header_lines'
UNPARSEABLE = 'unparseable'
INVALID_TEXT = 'invalid_text'
UNREADABLE_FILE = 'unreadable_file'
BOM = b'\xef\xbb\xbf'


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
  for what orjson refuses but Python's JSON accepts (NaN, huge integers, a
  byte order mark, lone surrogates), so the choice of parser never changes
  which lines are dead letters. Returns (value, whether orjson refused).

  Bytes are decoded as UTF-8 (a leading byte order mark dropped) before the
  standard library sees them: given bytes, it would guess UTF-16 or UTF-32
  from the first bytes, and a line that is not UTF-8 would be read as
  another encoding or called unparseable instead of `invalid_text`."""
  try:
    return orjson.loads(line), False
  except orjson.JSONDecodeError:
    if isinstance(line, (bytes, bytearray, memoryview)):
      line = bytes(line).decode('utf-8-sig')
    return json.loads(line), True


def parse_json_line(line):
  """(record, None) for a line holding one JSON object, else (None,
  (reason, why not)). `line` is str or UTF-8 bytes (bytes that are not
  UTF-8: `invalid_text`).

  A lone surrogate is `invalid_text`: orjson refuses every one, so only
  the lines the standard library parsed are searched for them."""
  try:
    record, fallback = _loads(line)
  except UnicodeDecodeError as e:  # bytes that are not UTF-8
    return None, (INVALID_TEXT, f'not UTF-8 text: {e}')
  except ValueError as e:
    return None, (UNPARSEABLE, f'invalid JSON: {e}')
  if not isinstance(record, dict):
    return None, (UNPARSEABLE,
                  f'expected a JSON object, got {type(record).__name__}')
  if fallback and has_lone_surrogate(record):
    return None, (INVALID_TEXT, 'a string holds a lone surrogate (not '
                  'Unicode text)')
  return record, None


def parse_text_line(line):
  """(record {"text": line}, None) for a UTF-8 line, else (None, (reason,
  why not)). Python's strict UTF-8 refuses the bytes of a surrogate."""
  try:
    return {'text': line.decode('utf-8')}, None
  except UnicodeDecodeError as e:
    return None, (INVALID_TEXT, f'not UTF-8 text: {e}')


class _ParseLines(beam.DoFn):
  """Lines (bytes) -> records by `parse`; dead letters keep the line's
  bytes."""

  def __init__(self, parse):
    self._parse = parse
    self._records = records_counter()

  def process(self, line):
    self._records.inc()
    record, problem = self._parse(line)
    if problem:
      yield reject(None, STAGE, problem[0], line, problem[1])
      return
    yield record


def _csv_rows(binary):
  """(fields or None, the row's lines, csv error or None) for each row of a
  CSV file, in order. Lines are decoded as UTF-8 (a byte order mark
  dropped) with undecodable bytes kept as surrogates, so each row's exact
  bytes can still be recovered; rows span lines where a quoted field does.
  strict: a quote left open at the end of the file is an error, not a last
  field that swallowed every line after it."""
  text = io.TextIOWrapper(binary, encoding='utf-8-sig',
                          errors='surrogateescape', newline='')
  pending = []

  def lines():
    for line in text:
      pending.append(line)
      yield line

  reader = csv.reader(lines(), strict=True)
  while True:
    try:
      row = next(reader)
      error = None
    except StopIteration:
      return
    except csv.Error as e:
      row, error = None, e
    yield row, list(pending), error
    pending.clear()


def _row_bytes(lines):
  return ''.join(lines).encode('utf-8', 'surrogateescape')


def csv_records(binary, path, counter):
  """Records of a CSV file (header row first) and its dead letters, as a
  DoFn yields them. Every row counts as one input, except that a row the
  parser cannot close (an unclosed quote) counts, and is dead-lettered, a
  line at a time: the lines it swallowed were rows as the file was written.
  A row whose field count differs from the header's, or whose header names
  a column twice, is `unparseable`; one that is not text, `invalid_text`.
  Blank lines are no rows."""
  header, first_line = None, 1
  for row, lines, error in _csv_rows(binary):
    line_no, first_line = first_line, first_line + len(lines)
    if header is None and error is None:
      if row:
        header = row
        Metrics.counter(STAGE, HEADER_LINES).inc()
        duplicated = sorted({n for n in header if header.count(n) > 1})
      continue
    if error is not None:
      problem = f'{path} line {line_no}: {error}'
      if len(lines) > 1:
        problem += (f' (an open quote made lines {line_no}-'
                    f'{line_no + len(lines) - 1} one row; each line is a '
                    'dead letter)')
      for line in lines:
        counter.inc()
        yield reject(None, STAGE, UNPARSEABLE, _row_bytes([line]), problem)
      continue
    if not row:
      continue
    counter.inc()
    if has_lone_surrogate(row):
      yield reject(None, STAGE, INVALID_TEXT, _row_bytes(lines),
                   f'{path} line {line_no}: not UTF-8 text')
    elif len(row) != len(header):
      yield reject(None, STAGE, UNPARSEABLE, _row_bytes(lines),
                   f'{path} line {line_no}: {len(header)} columns in the '
                   f'header, {len(row)} in this row')
    elif duplicated:
      yield reject(None, STAGE, UNPARSEABLE, _row_bytes(lines),
                   f'{path}: the header names {duplicated} more than once')
    else:
      yield dict(zip(header, row))


class _ParseCsvFile(beam.DoFn):
  """Reads one CSV file with its header (csv_records)."""

  def __init__(self):
    self._records = records_counter()

  def setup(self):
    # A long field is judged like any text, by the feature check's size
    # limit (text_too_long), not refused by csv's own 131,072-character one.
    csv.field_size_limit(sys.maxsize)

  def process(self, readable_file):
    with readable_file.open() as f:
      yield from csv_records(f, readable_file.metadata.path, self._records)


def _maybe_text(value):
  try:
    return value.decode('utf-8')
  except UnicodeDecodeError:
    return value


def example_record(example):
  """A tf.train.Example as a dict: a feature with one value becomes a
  scalar, several a list; bytes features become str when they are valid
  UTF-8."""
  record = {}
  for name, feature in example.features.feature.items():
    kind = feature.WhichOneof('kind')
    values = list(getattr(feature, kind).value) if kind else []
    if kind == 'bytes_list':
      values = [_maybe_text(v) for v in values]
    record[name] = values[0] if len(values) == 1 else values
  return record


def _avro_records(f):
  import fastavro  # pylint: disable=import-outside-toplevel
  yield from fastavro.reader(f)


def _parquet_records(f):
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  for batch in pq.ParquetFile(f).iter_batches():
    yield from batch.to_pylist()


def _tfrecords(f):
  """The payloads of a TFRecord file, length and data checksums verified
  (Beam's own framing reader)."""
  from apache_beam.io.tfrecordio import _TFRecordUtil  # pylint: disable=import-outside-toplevel
  while True:
    payload = _TFRecordUtil.read_record(f)
    if payload is None:
      return
    yield payload


class _ReadTypedFile(beam.DoFn):
  """One Avro, Parquet or TFRecord file -> its records; what follows damage
  in the file is one `unreadable_file` dead letter (module docstring)."""

  def __init__(self, input_format):
    self._format = input_format
    self._records = records_counter()
    self._unreadable = Metrics.counter(STAGE, UNREADABLE_FILES)

  def setup(self):
    self._example = None
    if self._format == 'tfrecord':
      from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel
      self._example = example_pb2.Example

  def _decoded(self, f):
    if self._format == 'avro':
      return _avro_records(f)
    if self._format == 'parquet':
      return _parquet_records(f)
    return _tfrecords(f)

  def process(self, readable_file):
    path = readable_file.metadata.path
    read = 0
    try:
      with readable_file.open(mime_type='application/octet-stream') as f:
        for item in self._decoded(f):
          read += 1
          self._records.inc()
          if self._example is None:
            yield item
          else:
            yield from self._parse_example(item)
    except Exception as e:  # pylint: disable=broad-except
      # Each decoder raises its own (EOFError, ValueError, ArrowInvalid,
      # OSError...): any of them means the rest of this file is unreadable.
      self._records.inc()
      self._unreadable.inc()
      yield reject(None, STAGE, UNREADABLE_FILE, {'file': path},
                   f'{self._format} file unreadable after {read} records: '
                   f'{type(e).__name__}: {e}')

  def _parse_example(self, serialized):
    try:
      example = self._example.FromString(serialized)
    except Exception as e:  # pylint: disable=broad-except
      # protobuf raises DecodeError, a bare Exception
      yield reject(None, STAGE, UNPARSEABLE, serialized,
                   f'not a tf.train.Example: {e}')
      return
    yield example_record(example)


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
          pattern, validate=False, coder=BytesCoder())
      parse = _ParseLines(parse_json_line if fmt == 'jsonl'
                          else parse_text_line)
    else:
      decoded = (pbegin
                 | f'Match {label}' >> fileio.MatchFiles(pattern)
                 | f'Open {label}' >> fileio.ReadMatches())
      parse = _ParseCsvFile() if fmt == 'csv' else _ReadTypedFile(fmt)
    return decoded | f'Parse {label}' >> RoutedParDo(parse)

  def expand(self, pbegin):
    return merge(
        (self._read(pbegin, i, p) for i, p in enumerate(self._patterns)),
        'Read')
