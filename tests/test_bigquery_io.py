"""BigQuery reads and writes through Beam's connectors, against the stand-in."""
import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from harness.bigquery import bigquery_emulator  # noqa: F401
from harness.gcs import gcs_emulator  # noqa: F401
from transforms.io import bigquery as bigquery_io
from common.records import prediction
from common.schema import Field
from common.schema import Shape
SHAPE = Shape('row', (
    Field('key', 'string', required=True), Field('score', 'float'),
    Field('tags', 'string', depth=1),
    Field('at', 'timestamp', required=True)), partition='at')
ROWS = [{'key': f'r{i}', 'score': i / 4, 'tags': ['a', 'b'][:i % 3],
         'at': f'2026-01-0{1 + i % 3}T12:00:00+00:00'} for i in range(8)]


def _options(gcs, **extra):
  return PipelineOptions(
      runner='FnApiRunner', temp_location=gcs.url('tmp'), **extra)


def _table_rows(bq, name):
  return sorted((dict(r) for r in bq.client().list_rows(
      f'{bq.project}.{bq.dataset}.{name}')), key=lambda r: r['key'])


@pytest.mark.parametrize('method', ['STREAMING_INSERTS', 'FILE_LOADS'])
def test_rows_round_trip_through_a_partitioned_table(
    bigquery_emulator, gcs_emulator, method):
  bq, name = bigquery_emulator, f'round_trip_{method.lower()}'
  with beam.Pipeline(options=_options(gcs_emulator)) as p:
    dead = (p | beam.Create(ROWS)
            | bigquery_io.WriteTable(bq.table(name), SHAPE, method))
    assert_that(dead, equal_to([]))
  table = bq.client().get_table(f'{bq.project}.{bq.dataset}.{name}')
  if method == 'STREAMING_INSERTS':
    # Beam creates the table itself, partitioned. With FILE_LOADS the load
    # job creates it; the stand-in ignores a load job's timePartitioning.
    assert table.time_partitioning.field == 'at'
  assert [r['key'] for r in _table_rows(bq, name)] == [r['key'] for r in ROWS]

  with beam.Pipeline(options=_options(gcs_emulator)) as p:
    read = p | bigquery_io.ReadTable(table=bq.table(name))
    assert_that(read.main | beam.Map(lambda r: (r['key'], r['score'],
                                                list(r['tags']))),
                equal_to([(r['key'], r['score'], r['tags']) for r in ROWS]))


def test_a_row_that_does_not_match_the_schema_is_a_dead_letter(
    bigquery_emulator, gcs_emulator):
  bq, name = bigquery_emulator, 'mismatch'
  bad = [{'key': 'b1', 'score': 'high', 'at': '2026-01-01T00:00:00Z'},
         {'key': 'b2', 'at': '2026-01-01T00:00:00Z', 'colour': 'red'},
         {'key': 'b3', 'score': 1.0}]
  with beam.Pipeline(options=_options(gcs_emulator)) as p:
    dead = (p | beam.Create(ROWS[:3] + bad)
            | bigquery_io.WriteTable(bq.table(name), SHAPE, 'FILE_LOADS'))
    assert_that(dead | beam.Map(lambda d: (d['key'], d['reason'], d['error'])),
                equal_to([
                    ('b1', 'schema_mismatch', "score: str 'high' is not FLOAT"),
                    ('b2', 'schema_mismatch', 'colour: no such column'),
                    ('b3', 'schema_mismatch', 'at: required, missing')]))
  assert [r['key'] for r in _table_rows(bq, name)] == ['r0', 'r1', 'r2']


def test_rows_bigquery_rejects_are_dead_letters_not_a_failed_job(
    bigquery_emulator, gcs_emulator):
  """The table already exists with another schema (here, made by an older
  job with integer keys): the rows match the schema in code, yet BigQuery
  refuses them; the job goes on and every refused row is a dead letter."""
  from google.cloud import bigquery
  bq, name = bigquery_emulator, 'older_schema'
  older = bigquery.Table(f'{bq.project}.{bq.dataset}.{name}', schema=[
      bigquery.SchemaField('key', 'INTEGER'),
      bigquery.SchemaField('score', 'FLOAT'),
      bigquery.SchemaField('tags', 'STRING', 'REPEATED'),
      bigquery.SchemaField('at', 'TIMESTAMP')])
  bq.client().create_table(older)
  with beam.Pipeline(options=_options(gcs_emulator)) as p:
    dead = (p | beam.Create(ROWS[:4])
            | bigquery_io.WriteTable(bq.table(name), SHAPE,
                                     'STREAMING_INSERTS', insert_retries=1))
    assert_that(dead | beam.Map(lambda d: (d['key'], d['reason'],
                                           d['stage'], d['raw'])),
                equal_to([(r['key'], 'bigquery_rejected', 'bigquery_write', r)
                          for r in ROWS[:4]]))
  assert _table_rows(bq, name) == []


@pytest.mark.parametrize('row, problem', [
    ({'key': 'a', 'at': '2026-01-01T00:00:00Z'}, None),
    ({'key': 'a', 'score': 1, 'tags': [], 'at': '2026-01-01'}, None),
    ({'key': 'a', 'score': True, 'at': 'x'}, "score: bool True is not FLOAT"),
    ({'key': 'a', 'tags': 'ab', 'at': 'x'}, 'tags: expected a list, got str'),
    ({'key': 'a', 'tags': ['a', 2], 'at': 'x'}, 'tags[1]: int 2 is not STRING'),
    ({'key': None, 'at': 'x'}, 'key: required, missing'),
])
def test_row_problem_names_the_first_mismatch(row, problem):
  assert bigquery_io.row_problem(
      row, SHAPE.bigquery_schema()['fields']) == problem


def test_row_problem_descends_into_records():
  fields = [Field('p', 'record', required=True, fields=(
      Field('x', 'float'), Field('n', 'int'))).bigquery()]
  assert bigquery_io.row_problem({'p': {'x': 0.5, 'n': '7'}}, fields) is None
  assert bigquery_io.row_problem({'p': {'x': 'big'}}, fields) == (
      "p.x: str 'big' is not FLOAT")
  assert bigquery_io.row_problem({'p': 3}, fields) == (
      'p: expected a record, got int')


@pytest.mark.parametrize('spec, parts', [
    ('p:d.t', ('p', 'd', 't')), ('p.d.t', ('p', 'd', 't')),
    ('my-project:my_dataset.my_table', ('my-project', 'my_dataset',
                                        'my_table'))])
def test_parse_table(spec, parts):
  assert bigquery_io.parse_table(spec) == parts


@pytest.mark.parametrize('spec', ['t', 'd.t', 'p:d', 'p:d.t.x', ':d.t'])
def test_parse_table_rejects(spec):
  with pytest.raises(ValueError, match='project:dataset.table'):
    bigquery_io.parse_table(spec)


def test_predictions_schema_follows_the_signature(tiny_model_dir):
  from models.runtime import signatures
  outputs = signatures.get_signature(tiny_model_dir).outputs
  schema = prediction.shape(outputs, ['source']).bigquery_schema()
  names = [f['name'] for f in schema['fields']]
  assert names == ['key', 'model_version', 'predictions', 'predicted_at',
                   'source']
  record = schema['fields'][2]
  assert {f['name']: (f['type'], f['mode']) for f in record['fields']} == {
      name: ('FLOAT', 'NULLABLE') for name in outputs}
