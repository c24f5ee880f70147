"""Continuous evaluation from BigQuery tables, metrics to a BigQuery table,
against the local stand-ins; the same data from files must give the same
metrics."""
import io
import json

import pytest
from google.cloud import bigquery

from pipelines import evaluate
from tests import evaluation_data as data
from harness.bigquery import bigquery_emulator  # noqa: F401
from harness.gcs import gcs_emulator  # noqa: F401
from common.records import prediction_log
LABELS_SCHEMA = [bigquery.SchemaField('key', 'STRING'),
                 bigquery.SchemaField('groundtruth', 'STRING'),
                 bigquery.SchemaField('labeled_at', 'TIMESTAMP')]


def _load(bq, name, rows, schema):
  data_bytes = ''.join(json.dumps(r) + '\n' for r in rows).encode()
  bq.client().load_table_from_file(
      io.BytesIO(data_bytes), f'{bq.project}.{bq.dataset}.{name}',
      job_config=bigquery.LoadJobConfig(
          schema=schema,
          source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON),
  ).result()


def _slices(path):
  with open(path) as f:
    return {(s['model_version'], s['slice']): s
            for s in map(json.loads, f)}


def test_tables_in_metrics_table_out_match_the_files_run(
    bigquery_emulator, gcs_emulator, tmp_path):
  bq = bigquery_emulator
  predictions, labels = data.binary_world(n_keys=120)
  log_schema = [bigquery.SchemaField.from_api_repr(f)
                for f in prediction_log.SHAPE.bigquery_schema()['fields']]
  # Log rows (common.records.prediction_log) already hold JSON text, as the
  # book's table does.
  _load(bq, 'prediction_log', predictions, log_schema)
  _load(bq, 'ground_truth', labels, LABELS_SCHEMA)
  common = ['--prediction_field', 'positive_review_probability',
            '--as_of', data.AS_OF.isoformat(), '--key_segments', 'age,sex,id',
            '--runner', 'FnApiRunner']

  assert evaluate.run([
      '--predictions_table', bq.table('prediction_log'),
      '--ground_truth_table', bq.table('ground_truth'),
      '--metrics_table', bq.table('metrics'),
      '--temp_location', gcs_emulator.url('tmp'),
      '--output', str(tmp_path / 'from_tables'), *common]) == 0
  for name, rows in (('p.jsonl', predictions), ('g.jsonl', labels)):
    (tmp_path / name).write_text(''.join(json.dumps(r) + '\n' for r in rows))
  assert evaluate.run([
      '--predictions', str(tmp_path / 'p.jsonl'),
      '--ground_truth', str(tmp_path / 'g.jsonl'),
      '--output', str(tmp_path / 'from_files'), *common]) == 0

  from_tables = _slices(tmp_path / 'from_tables' / 'slices.jsonl')
  from_files = _slices(tmp_path / 'from_files' / 'slices.jsonl')
  assert from_tables.keys() == from_files.keys()
  for name, s in from_files.items():
    assert from_tables[name]['count'] == s['count']
    assert from_tables[name]['accuracy'] == s['accuracy']

  rows = [dict(r) for r in bq.client().list_rows(
      f'{bq.project}.{bq.dataset}.metrics')]
  table = {(r['model_version'], r['slice']): r for r in rows}
  assert table.keys() == from_files.keys()
  everything = table[('1', 'all')]
  assert everything['accuracy'] == pytest.approx(
      from_files[('1', 'all')]['accuracy'])
  assert everything['as_of'] == data.AS_OF
  assert json.loads(everything['confusion_matrix']) == (
      from_files[('1', 'all')]['confusion_matrix'])
  assert {c['label'] for c in everything['per_class']} == {
      data.POS, data.NEG}


def test_drift_records_to_a_drift_table_match_drift_jsonl(
    bigquery_emulator, gcs_emulator, tmp_path):
  from common import feature_stats
  from tests import test_evaluation_drift as drift_data
  bq = bigquery_emulator
  log, labels = drift_data._log(8, 300, shift=True), []
  baseline = tmp_path / 'baseline_stats.json'
  baseline.write_text(feature_stats.dumps(
      drift_data._baseline(drift_data._log(7, 300))))
  for name, rows in (('p.jsonl', log), ('g.jsonl', labels)):
    (tmp_path / name).write_text(''.join(json.dumps(r) + '\n' for r in rows))
  assert evaluate.run([
      '--predictions', str(tmp_path / 'p.jsonl'),
      '--ground_truth', str(tmp_path / 'g.jsonl'),
      '--output', str(tmp_path / 'out'), '--windows', '',
      '--prediction_field', 'positive_review_probability',
      '--baseline', str(baseline), '--drift', 'psi>0.2',
      '--drift_table', bq.table('drift'),
      '--temp_location', gcs_emulator.url('tmp'),
      '--runner', 'FnApiRunner']) == 0
  with open(tmp_path / 'out' / 'drift.jsonl') as f:
    written = {(d['window_start'], d['feature'], d['metric']): d
               for d in map(json.loads, f)}
  rows = [dict(r) for r in bq.client().list_rows(
      f'{bq.project}.{bq.dataset}.drift')]
  assert len(rows) == len(written) == 27
  for r in rows:
    d = written[(r['window_start'].isoformat(), r['feature'], r['metric'])]
    assert r['value'] == pytest.approx(d['value'])
    assert (r['alert'], r['threshold'], r['count']) == (
        d['alert'], d['threshold'], d['count'])
  assert any(r['alert'] for r in rows)
