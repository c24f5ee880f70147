"""Record shapes declared once, with their Avro, Arrow and BigQuery schemas.

Every record a job writes (a prediction, a dead letter, a prediction-log row,
a moderation decision, an evaluation row) is declared once, as a `Shape` of
`Field`s in `common.records`. Each writer derives the schema it needs from
that declaration: Avro for WriteToAvro, a pyarrow schema for WriteToParquet,
a BigQuery TableSchema for WriteToBigQuery (and for `bq mk --schema`). So a
new field, or a changed type, is one edit, and the files and tables of one
record cannot drift apart.

Kinds, and what each becomes in every format:

  kind       JSON value        Avro      Arrow      BigQuery
  string     str               string    string     STRING
  int        int               long      int64      INTEGER
  int32      int               int       int32      INTEGER
  float      float             double    float64    FLOAT
  float32    float             float     float32    FLOAT
  bool       bool              boolean   bool       BOOLEAN
  timestamp  ISO-8601 str      string    string     TIMESTAMP
  json       any (JSON text    string    string     STRING
             in typed formats)
  record     dict              record    struct     RECORD

`depth` nests a field in lists (1: a list of values, 2: a list of lists).
BigQuery arrays cannot nest: a field deeper than 1 is a STRING of JSON text
there. A field is nullable unless `required`.
"""
import dataclasses

_AVRO = {'string': 'string', 'int': 'long', 'int32': 'int', 'float': 'double',
         'float32': 'float', 'bool': 'boolean', 'timestamp': 'string',
         'json': 'string'}
_BIGQUERY = {'string': 'STRING', 'int': 'INTEGER', 'int32': 'INTEGER',
             'float': 'FLOAT', 'float32': 'FLOAT', 'bool': 'BOOLEAN',
             'timestamp': 'TIMESTAMP', 'json': 'STRING', 'record': 'RECORD'}
KINDS = tuple(_BIGQUERY)

# A tensor's dtype (models.runtime.signatures.TensorSpec.dtype) -> the kind
# of field that holds one of its values.
_DTYPE_KINDS = {'string': 'string', 'bool': 'bool', 'float16': 'float32',
                'float32': 'float32', 'float64': 'float', 'int8': 'int32',
                'int16': 'int32', 'int32': 'int32', 'int64': 'int',
                'uint8': 'int32', 'uint16': 'int32', 'uint32': 'int'}


def kind_of_dtype(dtype):
  """The field kind of a tensor dtype name; other dtypes are floats."""
  return _DTYPE_KINDS.get(dtype, 'float')


@dataclasses.dataclass(frozen=True)
class Field:
  """One field of a record shape (see the module doc for kinds)."""
  name: str
  kind: str
  required: bool = False
  depth: int = 0
  fields: tuple = ()
  description: str = ''

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'{self.name}: unknown kind {self.kind!r}')
    if (self.kind == 'record') != bool(self.fields):
      raise ValueError(f'{self.name}: a record (and only a record) has fields')

  def bigquery(self):
    """This field as a BigQuery TableFieldSchema dict."""
    if self.depth > 1:
      out = {'name': self.name, 'type': 'STRING', 'mode': 'NULLABLE',
             'description': self.description or 'JSON array'}
      return out
    mode = ('REPEATED' if self.depth else
            'REQUIRED' if self.required else 'NULLABLE')
    out = {'name': self.name, 'type': _BIGQUERY[self.kind], 'mode': mode}
    if self.fields:
      out['fields'] = [f.bigquery() for f in self.fields]
    if self.description:
      out['description'] = self.description
    return out

  def avro(self, namespace):
    """This field as an Avro field dict (records are named types)."""
    if self.kind == 'record':
      base = {'type': 'record', 'name': _type_name(self.name),
              'namespace': namespace,
              'fields': [f.avro(namespace) for f in self.fields]}
    else:
      base = _AVRO[self.kind]
    for _ in range(self.depth):
      base = {'type': 'array', 'items': base}
    return {'name': self.name,
            'type': base if self.required else ['null', base]}

  def arrow(self):
    """This field as a pyarrow.Field."""
    import pyarrow as pa
    types = {'string': pa.string(), 'int': pa.int64(), 'int32': pa.int32(),
             'float': pa.float64(), 'float32': pa.float32(),
             'bool': pa.bool_(), 'timestamp': pa.string(),
             'json': pa.string()}
    if self.kind == 'record':
      base = pa.struct([f.arrow() for f in self.fields])
    else:
      base = types[self.kind]
    for _ in range(self.depth):
      base = pa.list_(base)
    return pa.field(self.name, base, nullable=not self.required)


def _type_name(field_name):
  """'predictions' -> 'Predictions': Avro's convention for named types."""
  return ''.join(part.capitalize() for part in field_name.split('_'))


@dataclasses.dataclass(frozen=True)
class Shape:
  """A record: its fields in output order, the column a BigQuery table of
  it is partitioned on by day, and the field a dead letter of it is keyed
  by."""
  name: str
  fields: tuple
  partition: str | None = None
  key_field: str = 'key'

  @property
  def names(self):
    return tuple(f.name for f in self.fields)

  def plus(self, *fields, partition=None):
    """The same shape with `fields` appended (and partitioned on
    `partition`, when given)."""
    return dataclasses.replace(self, fields=self.fields + tuple(fields),
                               partition=partition or self.partition)

  def bigquery_schema(self):
    """{"fields": [...]}: the REST API's TableSchema, which WriteToBigQuery
    takes as it is."""
    return {'fields': [f.bigquery() for f in self.fields]}

  def time_partitioning(self):
    """The `timePartitioning` table option (daily on `partition`), or None."""
    return {'type': 'DAY', 'field': self.partition} if self.partition else None

  def avro_schema(self, namespace='resilient_serving'):
    return {'type': 'record', 'name': _type_name(self.name),
            'namespace': namespace,
            'fields': [f.avro(namespace) for f in self.fields]}

  def arrow_schema(self):
    import pyarrow as pa
    return pa.schema([f.arrow() for f in self.fields])
