"""BigQuery tables in and out, with Beam's own connectors and dead letters.

ReadTable   ReadFromBigQuery of a table (Storage Read API, DIRECT_READ) or of
            a query, into dict records counted as `read/records`.
WriteTable  WriteToBigQuery into a day-partitioned table created from a record
            shape (common.records). No row fails the job: a row that
            does not match the schema leaves as a `schema_mismatch` dead letter
            before it is sent (so a FILE_LOADS load job never fails on it), and
            a row BigQuery itself rejects (STREAMING_INSERTS, STORAGE_WRITE_API:
            e.g. a table that already exists with another schema) leaves as
            `bigquery_rejected` with BigQuery's errors, once transient errors
            were retried.

Write methods (WriteToBigQuery.Method):
  FILE_LOADS         load jobs from files staged on gs:// (--temp_location);
                     free, atomic per load; the default in batch.
  STREAMING_INSERTS  insertAll; rows visible within seconds, per-row errors;
                     the default in streaming.
  STORAGE_WRITE_API  Beam runs it as a cross-language (Java) transform; needs
                     Java and the expansion service jar, e.g. on Dataflow;
                     per-row errors (transforms/io/storage_write.py).
"""
import datetime
import json
import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.records import dead_letter
from transforms.dead_letter import METRICS_NAMESPACE
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject
from transforms.io import storage_write
from common.event_time import BadTimestamp
from common.json_safe import json_safe

FILE_LOADS = 'FILE_LOADS'
STREAMING_INSERTS = 'STREAMING_INSERTS'
STORAGE_WRITE_API = 'STORAGE_WRITE_API'
WRITE_METHODS = (FILE_LOADS, STREAMING_INSERTS, STORAGE_WRITE_API)
# The methods whose WriteResult names each row BigQuery refused.
PER_ROW_ERRORS = (STREAMING_INSERTS, STORAGE_WRITE_API)
DIRECT_READ = 'DIRECT_READ'
STAGE = 'bigquery_write'
SCHEMA_MISMATCH = 'schema_mismatch'
REJECTED = 'bigquery_rejected'
WRITE_REASONS = (SCHEMA_MISMATCH, REJECTED)
DEFAULT_INSERT_RETRIES = 10
_LOG = logging.getLogger(__name__)


def default_write_method(streaming):
  """Streaming inserts for streaming jobs (rows visible at once, per-row
  errors); load jobs for batch (free, atomic, no streaming quota)."""
  return STREAMING_INSERTS if streaming else FILE_LOADS


def parse_table(spec):
  """'project:dataset.table' or 'project.dataset.table' -> the three parts;
  raises ValueError naming the expected form."""
  project, sep, rest = spec.partition(':')
  if not sep:
    project, _, rest = spec.partition('.')
  dataset, _, table = rest.partition('.')
  if not (project and dataset and table) or '.' in table or ':' in rest:
    raise ValueError(f'{spec!r} is not project:dataset.table')
  return project, dataset, table


class _CountRows(beam.DoFn):

  def __init__(self):
    self._records = Metrics.counter('read', 'records')

  def process(self, row):
    self._records.inc()
    yield row


class ReadTable(beam.PTransform):
  """Reads a BigQuery table (or query) into dict records; returns `Routed`
  like sources.ReadRecords (nothing fails to decode, so no dead letters).

  Query reads run a query job into a temporary table first: they need a real
  BigQuery (the local stand-in never creates query destination tables).
  """

  def __init__(self, table=None, query=None, method=DIRECT_READ):
    super().__init__()
    if (table is None) == (query is None):
      raise ValueError('read exactly one of a table or a query')
    self._table, self._query, self._method = table, query, method

  def expand(self, pbegin):
    if self._table:
      read = beam.io.ReadFromBigQuery(table=self._table, method=self._method)
    else:
      read = beam.io.ReadFromBigQuery(
          query=self._query, use_standard_sql=True, method=self._method)
    return pbegin | 'ReadFromBigQuery' >> read | RoutedParDo(_CountRows())


_TIMESTAMP_TYPES = ('TIMESTAMP', 'DATETIME', 'DATE', 'TIME')
_INTEGER = ('INTEGER', 'INT64')
_FLOAT = ('FLOAT', 'FLOAT64', 'NUMERIC', 'BIGNUMERIC')
_BOOLEAN = ('BOOLEAN', 'BOOL')
_RECORD = ('RECORD', 'STRUCT')


def _value_problem(value, spec, path):
  """Why `value` cannot be stored in the column `spec`, or None."""
  kind = spec['type'].upper()
  if kind in _RECORD:
    if not isinstance(value, dict):
      return f'{path}: expected a record, got {type(value).__name__}'
    return row_problem(value, spec['fields'], f'{path}.')
  if isinstance(value, bool):
    ok = kind in _BOOLEAN or kind in ('STRING', 'JSON')
  elif kind in _INTEGER:
    ok = isinstance(value, int) or (
        isinstance(value, str) and value.lstrip('-').isdigit())
  elif kind in _FLOAT:
    ok = isinstance(value, (int, float))
  elif kind in _BOOLEAN:
    ok = False
  elif kind in _TIMESTAMP_TYPES:
    ok = isinstance(value, (str, datetime.date, datetime.time))
  elif kind == 'JSON':
    ok = True
  else:  # STRING, BYTES, GEOGRAPHY
    ok = isinstance(value, str)
  return None if ok else (
      f'{path}: {type(value).__name__} {value!r:.40} is not {kind}')


def row_problem(row, fields, prefix=''):
  """Why `row` does not match the schema `fields`, or None (one reason)."""
  known = {f['name'] for f in fields}
  unknown = sorted(set(row) - known)
  if unknown:
    return f'{prefix}{unknown[0]}: no such column'
  for spec in fields:
    path = f'{prefix}{spec["name"]}'
    value = row.get(spec['name'])
    mode = spec.get('mode', 'NULLABLE').upper()
    if value is None:
      if mode == 'REQUIRED':
        return f'{path}: required, missing'
      continue
    if mode == 'REPEATED':
      if not isinstance(value, (list, tuple)):
        return f'{path}: expected a list, got {type(value).__name__}'
      problems = (_value_problem(v, spec, f'{path}[{i}]')
                  for i, v in enumerate(value))
      problem = next((p for p in problems if p), None)
    else:
      problem = _value_problem(value, spec, path)
    if problem:
      return problem
  return None


class _ValidateRows(beam.DoFn):
  """Rows that match the schema, as the write method takes them (the
  Storage Write API: Beam Timestamps); the others become dead letters."""

  def __init__(self, schema, key_field, method):
    self._fields = schema['fields']
    self._key_field = key_field
    self._storage_write = method == STORAGE_WRITE_API

  def process(self, row):
    problem = row_problem(row, self._fields)
    if not problem and self._storage_write:
      try:
        row = storage_write.to_beam_values(row, self._fields)
      except BadTimestamp as e:
        problem = str(e)
    if problem:
      yield reject(row.get(self._key_field), STAGE, SCHEMA_MISMATCH, row,
                   problem)
      return
    yield row


class _FailedRowsToDeadLetters(beam.DoFn):
  """(destination, row, errors) from WriteToBigQuery -> dead letters."""

  def __init__(self, key_field):
    self._key_field = key_field
    self._rejected = Metrics.counter(METRICS_NAMESPACE, REJECTED)

  def process(self, failed):
    destination, row, errors = failed
    self._rejected.inc()
    if not isinstance(errors, str):
      errors = json.dumps(json_safe(errors))
    yield dead_letter.record(row.get(self._key_field), STAGE, REJECTED, row,
                             f'{destination}: {errors}')


def rejected_rows(result, method, table):
  """The rows BigQuery refused, from WriteToBigQuery's WriteResult, as
  (table, row, errors); None for methods that name none (FILE_LOADS: a
  load job fails whole, which _ValidateRows prevents)."""
  if method not in PER_ROW_ERRORS:
    return None
  failed = result.failed_rows_with_errors
  if method == STORAGE_WRITE_API:
    failed = failed | 'Storage Write API errors' >> beam.Map(
        storage_write.failed_row, table)
  return failed


def rejected_dead_letters(result, method, table, key_field):
  """Dead letters (`bigquery_rejected`, BigQuery's errors in `error`) of
  the rows a WriteToBigQuery `result` refused; None for FILE_LOADS."""
  failed = rejected_rows(result, method, table)
  if failed is None:
    return None
  return failed | 'Rejected' >> beam.ParDo(_FailedRowsToDeadLetters(key_field))


class WriteTable(beam.PTransform):
  """Appends dict rows to a BigQuery table; returns its dead letters.

  Args:
    table: 'project:dataset.table' (created from `shape`, day-partitioned on
      its partition column, when absent; appended to when present).
    shape: the rows' common.schema.Shape (common.records): the table schema,
      the partition column and the field that keys a dead letter.
    method: one of WRITE_METHODS (None: Beam's default for the mode).
    insert_retries: how often STREAMING_INSERTS retries a row that fails
      with a transient error (exponential backoff from 0.2 s) before it
      becomes a dead letter; errors such as 'invalid' are never retried.
  """

  def __init__(self, table, shape, method=None,
               insert_retries=DEFAULT_INSERT_RETRIES):
    super().__init__()
    if method is not None and method not in WRITE_METHODS:
      raise ValueError(f'unknown write method {method!r}')
    self._table, self._shape = table, shape
    self._method = method
    self._insert_retries = insert_retries

  def expand(self, rows):
    key_field = self._shape.key_field
    valid = rows | 'Validate' >> RoutedParDo(_ValidateRows(
        self._shape.bigquery_schema(), key_field, self._method))
    result = valid.main | 'WriteToBigQuery' >> _write_to_bigquery(
        self._table, self._shape, self._method, self._insert_retries)
    rejected = rejected_dead_letters(result, self._method, self._table,
                                     key_field)
    if rejected is None:
      return valid.dead_letter
    return (valid.dead_letter, rejected) | 'Dead letters' >> beam.Flatten()


def _write_to_bigquery(table, shape, method, retries):
  partitioning = shape.time_partitioning()
  return beam.io.WriteToBigQuery(
      table, schema=shape.bigquery_schema(),
      method=method or beam.io.WriteToBigQuery.Method.DEFAULT,
      create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
      write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
      additional_bq_parameters=(
          {'timePartitioning': partitioning} if partitioning else {}),
      insert_retry_strategy=beam.io.gcp.bigquery_tools.RetryStrategy
      .RETRY_ON_TRANSIENT_ERROR,
      max_retries=retries)


class _ToDeadLetterRows(beam.DoFn):

  def __init__(self):
    self._total = Metrics.counter('output', 'dead_letters')

  def process(self, record):
    self._total.inc()
    yield dead_letter.table_row(record, datetime.datetime.now(
        datetime.timezone.utc).isoformat())


class _LoseLoudly(beam.DoFn):
  """A dead letter the dead-letter table rejects has nowhere left to go: it
  is logged in full and counted as `output/dead_letters_lost`."""

  def __init__(self):
    self._lost = Metrics.counter('output', 'dead_letters_lost')

  def process(self, failed):
    _, record, errors = failed
    self._lost.inc()
    _LOG.error('dead letter lost (%s): %s', json.dumps(errors, default=str),
               json.dumps(record, default=str))


class WriteDeadLetterTable(beam.PTransform):
  """Writes the flattened dead letters of every stage to a BigQuery table
  (`raw` as JSON text, day-partitioned on when they were written)."""

  def __init__(self, table, method=None,
               insert_retries=DEFAULT_INSERT_RETRIES):
    super().__init__()
    self._table, self._method = table, method
    self._insert_retries = insert_retries

  def expand(self, dead_letters):
    rows = dead_letters | 'To rows' >> beam.ParDo(_ToDeadLetterRows())
    if self._method == STORAGE_WRITE_API:
      rows = rows | 'Storage Write API values' >> beam.Map(
          storage_write.to_beam_values,
          dead_letter.TABLE_SHAPE.bigquery_schema()['fields'])
    result = rows | 'Write' >> _write_to_bigquery(
        self._table, dead_letter.TABLE_SHAPE, self._method,
        self._insert_retries)
    failed = rejected_rows(result, self._method, self._table)
    if failed is None:
      return None
    return failed | 'Lost' >> beam.ParDo(_LoseLoudly())


def to_json_line(row):
  """A table row as one JSON line, for transforms that read JSON lines
  (TIMESTAMP columns become ISO-8601 strings)."""
  return json.dumps(json_safe(row), ensure_ascii=False, sort_keys=True)
