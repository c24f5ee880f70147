"""WriteTable with STORAGE_WRITE_API, as far as it runs offline.

Beam's Storage Write API sink is a cross-language (Java) transform: building
it fetches the expansion service jar, which cannot be done here, so the
write itself runs only on Dataflow (or where Java and the jar are at hand).
What is checked here with Beam's own pieces: the rows WriteTable hands the
sink are what its input coder takes (Beam Rows typed from the table schema,
through Beam's own conversion and a RowCoder round trip), and the rows the
sink reports refused, in the shape its WriteResult gives them, come out as
dead letters with BigQuery's reason and the row as it was.
"""
import apache_beam as beam
import pytest
from apache_beam.io.gcp import bigquery_tools
from apache_beam.io.gcp.bigquery import StorageWriteToBigQuery
from apache_beam.io.gcp.bigquery import WriteResult
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from common.schema import Field
from common.schema import Shape
from transforms.dead_letter import RoutedParDo
from transforms.io import bigquery
from transforms.io import storage_write

TABLE = 'test-project:dataset.events'
SHAPE = Shape('event', (
    Field('key', 'string', required=True),
    Field('at', 'timestamp', required=True),
    Field('seen', 'record', depth=1, fields=(
        Field('when', 'timestamp'), Field('where', 'string'))),
    Field('score', 'float'),
), partition='at')
SCHEMA = SHAPE.bigquery_schema()
ROWS = [
    {'key': 'a', 'at': '2026-11-01T10:00:00Z', 'score': 0.5,
     'seen': [{'when': '2026-11-01T09:00:00Z', 'where': 'web'}]},
    {'key': 'b', 'at': '2026-11-02T00:00:00Z', 'score': None, 'seen': []},
]


def _as_the_sink_reads_them(rows):
  """Beam's own dict -> Beam Row step of its Storage Write API sink, then a
  shuffle, so every row is encoded and decoded with the sink's RowCoder."""
  return (rows
          | StorageWriteToBigQuery.ConvertToBeamRows(
              SCHEMA, False).with_output_types()
          | beam.Reshuffle())


def test_rows_are_what_the_storage_write_sink_encodes():
  with TestPipeline('FnApiRunner') as p:
    checked = (p | beam.Create(ROWS) | RoutedParDo(bigquery._ValidateRows(
        SCHEMA, 'key', bigquery.STORAGE_WRITE_API)))
    back = (_as_the_sink_reads_them(checked.main)
            | beam.Map(storage_write.plain))
    assert_that(back, equal_to(ROWS))
    assert_that(checked.dead_letter, equal_to([]), label='none refused')


def test_iso_text_timestamps_are_what_the_sink_cannot_encode():
  """Why the conversion: Beam's sink takes the dicts' values as they are."""
  with pytest.raises(Exception, match="'str' object has no attribute 'micros'"):
    with TestPipeline('FnApiRunner') as p:
      _ = _as_the_sink_reads_them(p | beam.Create(ROWS))


def test_a_timestamp_that_cannot_be_converted_is_a_dead_letter():
  bad = dict(ROWS[0], key='c', at='yesterday')
  with TestPipeline('FnApiRunner') as p:
    checked = p | beam.Create([bad]) | RoutedParDo(bigquery._ValidateRows(
        SCHEMA, 'key', bigquery.STORAGE_WRITE_API))
    assert_that(checked.dead_letter | beam.Map(
        lambda d: (d['key'], d['reason'], d['raw'], 'yesterday' in d['error'])),
                equal_to([('c', bigquery.SCHEMA_MISMATCH, bad, True)]))


def test_rows_the_storage_write_api_refuses_are_dead_letters():
  refused = [{  # an element of the sink's failed_rows_with_errors
      'error_message': 'Field score: expected FLOAT64, got out of range',
      'failed_row': bigquery_tools.beam_row_from_dict(
          storage_write.to_beam_values(ROWS[0], SCHEMA['fields']),
          SCHEMA)._asdict()}]
  with TestPipeline('FnApiRunner') as p:
    result = WriteResult(method=bigquery.STORAGE_WRITE_API,
                         failed_rows_with_errors=p | beam.Create(refused))
    dead = bigquery.rejected_dead_letters(
        result, bigquery.STORAGE_WRITE_API, TABLE, 'key')
    assert_that(dead, equal_to([{
        'key': 'a', 'stage': bigquery.STAGE, 'reason': bigquery.REJECTED,
        'raw': ROWS[0],
        'error': f'{TABLE}: Field score: expected FLOAT64, got out of range',
    }]))


def test_load_jobs_name_no_rows():
  assert bigquery.rejected_rows(
      WriteResult(method=bigquery.FILE_LOADS), bigquery.FILE_LOADS,
      TABLE) is None
