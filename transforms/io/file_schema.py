"""The fields a file's records will have, read from its header or schema
before anything runs.

A CSV header, an Avro writer schema and a Parquet schema say up front which
fields every record of the file holds. When the key or a feature is not
among them, every record would be dead-lettered for the same reason; the
job checks here instead and refuses with one line (pipelines/inputs.py).
JSON lines and TFRecords carry no schema: for them a summary warning says
when every input died for one reason (pipelines/summary.py).
"""
import csv
import io

from apache_beam.io.filesystems import FileSystems

from transforms.io import sources

SCHEMA_FORMATS = ('csv', 'avro', 'parquet')
_FIRST_LINE_BYTES = 1 << 16


class NotThisFormat(ValueError):
  """The file does not look like the format it is read as."""


def _csv_header(f, path):
  head = f.read(_FIRST_LINE_BYTES)
  if head.startswith(sources.BOM):
    head = head[len(sources.BOM):]
  first = head.split(b'\n', 1)[0].rstrip(b'\r')
  if first.lstrip().startswith(b'{'):
    raise NotThisFormat(f'{path} starts like JSON lines ({first[:40]!r})')
  text = first.decode('utf-8', 'replace')
  return next(csv.reader(io.StringIO(text)), [])


def _avro_fields(schema, prefix=''):
  """Dotted paths of an Avro record schema's fields, nested records too."""
  out = set()
  for field in schema.get('fields', []):
    name = prefix + field['name']
    out.add(name)
    types = field['type'] if isinstance(field['type'], list) else [
        field['type']]
    for t in types:
      if isinstance(t, dict) and t.get('type') == 'record':
        out |= _avro_fields(t, name + '.')
  return out


def _arrow_fields(fields, prefix=''):
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  out = set()
  for field in fields:
    name = prefix + field.name
    out.add(name)
    if pa.types.is_struct(field.type):
      out |= _arrow_fields(list(field.type), name + '.')
  return out


def fields_of(path, input_format):
  """The (dotted) field names every record of the file at `path` has, or
  None where the format has no schema. Raises NotThisFormat, or the
  reader's own error for a file it cannot read (left to the job, which
  dead-letters such a file)."""
  if input_format not in SCHEMA_FORMATS:
    return None
  with FileSystems.open(path) as f:
    if input_format == 'csv':
      return set(_csv_header(f, path))
    if input_format == 'avro':
      import fastavro  # pylint: disable=import-outside-toplevel
      return _avro_fields(fastavro.reader(f).writer_schema)
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    return _arrow_fields(list(pq.read_schema(f)))
