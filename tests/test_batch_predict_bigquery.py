"""batch_predict with Google Cloud I/O: BigQuery tables and gs:// files,
end to end against the local stand-ins."""
import io
import json

import pytest
from google.cloud import bigquery

from models.runtime import predictor
from models.runtime import signatures
from pipelines import batch_predict
from pipelines import launch
from harness.bigquery import bigquery_emulator  # noqa: F401
from harness.gcs import gcs_emulator  # noqa: F401

TEXTS = ['great film', 'awful acting', 'loved it', 'a dull mess', 'boring']
ROWS = [{'key': f'k{i:03d}', 'text': f'{TEXTS[i % len(TEXTS)]} {i}',
         'source': 'web' if i % 2 else 'app'} for i in range(40)]
BAD_ROWS = [{'key': 'k003', 'text': 'a duplicate key', 'source': 'web'},
            {'key': 'n1', 'text': None, 'source': 'web'},
            {'key': None, 'text': 'no key', 'source': 'app'}]
INPUT_SCHEMA = [bigquery.SchemaField('key', 'STRING'),
                bigquery.SchemaField('text', 'STRING'),
                bigquery.SchemaField('source', 'STRING')]


def _load(bq, name, rows, schema=INPUT_SCHEMA):
  """Loads rows with a load job from NDJSON (the stand-in mishandles
  load_table_from_json)."""
  client = bq.client()
  data = ''.join(json.dumps(r) + '\n' for r in rows).encode()
  config = bigquery.LoadJobConfig(
      schema=schema,
      source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON)
  client.load_table_from_file(
      io.BytesIO(data), f'{bq.project}.{bq.dataset}.{name}',
      job_config=config).result()


def _rows(bq, name):
  return [dict(r) for r in bq.client().list_rows(
      f'{bq.project}.{bq.dataset}.{name}')]


def _expected(model_dir, rows):
  outs = predictor.load(model_dir).predict([r['text'] for r in rows])
  return {r['key']: o['positive_review_probability'] for r, o in zip(rows, outs)}


def _run(model_dir, *flags):
  return batch_predict.run([
      '--model_dir', model_dir, '--feature_map', 'reviews=text',
      '--batch_size', '16', '--runner', 'FnApiRunner', *flags])


def test_table_to_table_with_dead_letters_in_a_table(
    bigquery_emulator, gcs_emulator, tiny_model_dir):
  bq = bigquery_emulator
  _load(bq, 'reviews', ROWS + BAD_ROWS)
  figures = _run(
      tiny_model_dir, '--input_table', bq.table('reviews'),
      '--output_table', bq.table('predictions'),
      '--dead_letter_table', bq.table('rejected'),
      '--passthrough_fields', 'source',
      '--temp_location', gcs_emulator.url('tmp'))  # FILE_LOADS, the default

  written = _rows(bq, 'predictions')
  expected = _expected(tiny_model_dir, ROWS)
  assert sorted(r['key'] for r in written) == sorted(expected)
  by_key = {r['key']: r for r in written}
  for row in ROWS:
    got = by_key[row['key']]
    assert got['predictions']['positive_review_probability'] == pytest.approx(
        expected[row['key']], abs=1e-6)
    assert got['model_version'] == signatures.default_model_version(
        tiny_model_dir)
    assert got['source'] == row['source']
    assert got['predicted_at'].tzinfo is not None

  rejected = _rows(bq, 'rejected')
  assert sorted((r['reason'], r['key']) for r in rejected) == [
      ('duplicate_key', 'k003'), ('missing_feature', 'n1'),
      ('missing_key', None)]
  assert all(r['dead_lettered_at'] is not None for r in rejected)
  missing = next(r for r in rejected if r['reason'] == 'missing_feature')
  assert json.loads(missing['raw']) == BAD_ROWS[1]

  assert figures['inputs'] == 43 and figures['predictions'] == 40
  assert figures['dead_letters'] == 3 and figures['reconciled']


def test_rows_the_output_table_refuses_are_dead_letters(
    bigquery_emulator, gcs_emulator, tiny_model_dir):
  """An output table made earlier with another schema (integer keys) refuses
  every prediction: the job still succeeds, and each one is a dead letter."""
  bq = bigquery_emulator
  _load(bq, 'few_reviews', ROWS[:5])
  bq.client().create_table(bigquery.Table(
      f'{bq.project}.{bq.dataset}.old_predictions', schema=[
          bigquery.SchemaField('key', 'INTEGER')]))
  figures = _run(
      tiny_model_dir, '--input_table', bq.table('few_reviews'),
      '--output_table', bq.table('old_predictions'),
      '--bq_write_method', 'STREAMING_INSERTS', '--bq_insert_retries', '1')
  assert _rows(bq, 'old_predictions') == []
  rejected = _rows(bq, 'old_predictions_errors')
  assert sorted(r['key'] for r in rejected) == [r['key'] for r in ROWS[:5]]
  assert {(r['stage'], r['reason']) for r in rejected} == {
      ('bigquery_write', 'bigquery_rejected')}
  assert json.loads(rejected[0]['raw'])['model_version'] == (
      signatures.default_model_version(tiny_model_dir))
  assert figures['predictions'] == 0 and figures['dead_letters'] == 5
  assert figures['reconciled']


def test_gs_files_in_and_out(gcs_emulator, tiny_model_dir):
  bucket = gcs_emulator.client().bucket(gcs_emulator.bucket)
  lines = ''.join(json.dumps(r) + '\n' for r in ROWS[:10])
  bucket.blob('in/part-0.jsonl').upload_from_string(lines + '{"broken\n')
  figures = _run(
      tiny_model_dir, '--input', gcs_emulator.url('in/*.jsonl'),
      '--output', gcs_emulator.url('out/predictions'))
  out = sorted(b.name for b in bucket.list_blobs(prefix='out/'))
  predictions = [json.loads(line) for name in out if '_errors' not in name
                 for line in bucket.blob(name).download_as_text().splitlines()]
  errors = [json.loads(line) for name in out if '_errors' in name
            for line in bucket.blob(name).download_as_text().splitlines()]
  assert sorted(p['key'] for p in predictions) == [r['key'] for r in ROWS[:10]]
  assert [e['reason'] for e in errors] == ['unparseable']
  assert figures['reconciled'] and figures['inputs'] == 11


def test_missing_credentials_is_one_clear_line(monkeypatch, capsys):
  import google.auth
  from google.auth import exceptions

  def no_credentials(*args, **kwargs):
    raise exceptions.DefaultCredentialsError('File not found')
  monkeypatch.setattr(google.auth, 'default', no_credentials)
  argv = ['--input_table', 'p:d.reviews', '--model_dir', 'unused',
          '--output_table', 'p:d.predictions']
  with pytest.raises(launch.UsageError, match='^--input_table: no Google '
                     'Cloud credentials found'):
    batch_predict.run(argv)
  assert launch.main(batch_predict.run, argv) == launch.EXIT_USAGE
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'gcloud auth application-default' in err


@pytest.mark.parametrize('argv, flag', [
    (['--input_table', 'reviews'], '--input_table'),
    (['--input_table', 'p:d.t', '--input', 'x.jsonl'], '--input'),
    (['--output_table', 'p:d.t'], '--input'),
    (['--input_table', 'p:d.t', '--output_table', 'p:d.o',
      '--temp_location', '/tmp', '--no_auth'], '--temp_location'),
    (['--input_table', 'p:d.t', '--no_auth'], '--output'),
])
def test_cloud_usage_errors_name_the_flag(argv, flag):
  with pytest.raises(launch.UsageError) as e:
    batch_predict.run(['--model_dir', 'unused', *argv])
  assert e.value.flag == flag
