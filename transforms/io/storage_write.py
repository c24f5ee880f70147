"""Rows to and from BigQuery's Storage Write API as Beam runs it.

Beam writes with STORAGE_WRITE_API through a cross-language (Java)
transform: dict rows become Beam Rows typed from the table schema, so a
TIMESTAMP column must hold a Beam Timestamp (the records carry ISO-8601
text), and a row BigQuery refuses comes back from the Java side as
{"error_message": str, "failed_row": <the Beam Row as a dict>}
(WriteToBigQuery's `failed_rows_with_errors`). `to_beam_values` prepares a
row on the way in; `failed_row` turns a refusal back into (table, the row as
it was, BigQuery's message) for the dead letters.
"""
import datetime

from apache_beam.utils.timestamp import Timestamp

from common.event_time import parse_timestamp

_RECORD = ('RECORD', 'STRUCT')


def _to_beam(value, field):
  kind = field['type'].upper()
  if value is None:
    return None
  if kind == 'TIMESTAMP' and not isinstance(value, Timestamp):
    if isinstance(value, datetime.datetime):
      return Timestamp.from_utc_datetime(value.astimezone(
          datetime.timezone.utc))
    return Timestamp.of(parse_timestamp(value))
  if kind in _RECORD and isinstance(value, dict):
    return to_beam_values(value, field['fields'])
  return value


def to_beam_values(row, fields):
  """`row` with its TIMESTAMP values (ISO-8601 text, epoch seconds,
  datetimes) as Beam Timestamps, through records and repeated fields;
  `fields` is the BigQuery schema's field list."""
  out = dict(row)
  for field in fields:
    value = out.get(field['name'])
    if field.get('mode', 'NULLABLE').upper() == 'REPEATED' and value:
      out[field['name']] = [_to_beam(v, field) for v in value]
    else:
      out[field['name']] = _to_beam(value, field)
  return out


def plain(value):
  """A row as the Storage Write API hands it back (nested Beam Rows, Beam
  Timestamps) as the dict row it was, timestamps as ISO-8601 text."""
  if hasattr(value, '_asdict'):
    value = value._asdict()
  if isinstance(value, dict):
    return {k: plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  if isinstance(value, Timestamp):
    return value.to_rfc3339()
  return value


def failed_row(failed, table):
  """One element of the write's failed_rows_with_errors -> (table, row,
  BigQuery's error message)."""
  return table, plain(failed['failed_row']), failed['error_message']
