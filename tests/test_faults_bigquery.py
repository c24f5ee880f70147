"""BigQuery unavailable while the batch job writes its predictions: the
real clients meet HTTP 503s (harness/fault_proxy.py in front of the
BigQuery stand-in), as from Google's front ends when BigQuery is down.

A short outage is retried and loses nothing; a long one stops the job
(docs/reliability.md says why, and what Dataflow does instead) without
counting a row as written, and the rerun writes each row once.
"""
import pytest

from harness import bigquery as bigquery_harness
from harness.bigquery import bigquery_emulator  # noqa: F401
from harness.fault_figures import record
from harness.fault_proxy import FaultProxy
from harness.gcs import gcs_emulator  # noqa: F401
from pipelines import batch_predict
from tests import batch_io

ROWS = [{'key': f'k{i:02d}', 'text': f'a film numbered {i}'}
        for i in range(30)]


@pytest.fixture
def quick_client_retry(monkeypatch):
  """The clients' own retry of a 503, shortened to keep the test short
  (Beam's retries, --bq_insert_retries, come on top)."""
  from google.api_core import exceptions
  from google.api_core import retry
  monkeypatch.setattr(bigquery_harness, 'short_retry', lambda: retry.Retry(
      predicate=retry.if_exception_type(exceptions.ServiceUnavailable),
      initial=0.05, maximum=0.1, timeout=0.3))


def _run(tmp_path, model_dir, table, retries):
  inputs = batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', 2)
  return batch_predict.run([
      '--input', inputs, '--model_dir', model_dir,
      '--feature_map', 'reviews=text', '--output_table', table,
      '--bq_write_method', 'STREAMING_INSERTS',
      '--bq_insert_retries', str(retries),
      '--dead_letter', str(tmp_path / 'dead'), '--runner', 'FnApiRunner'])


def _run_in_outage(bq, failing_inserts, *run_args):
  """_run(*run_args) while the proxy answers 503 to `failing_inserts`
  streaming inserts (None: all); returns (the proxy, the run's figures)."""
  with FaultProxy(bq.rest_endpoint) as proxy:
    with bigquery_harness.clients_via(bq, proxy.url):
      proxy.fail('/insertAll', times=failing_inserts)
      return proxy, _run(*run_args)


def _keys_written(bq, table):
  return [r['key'] for r in bq.client().list_rows(
      f'{bq.project}.{bq.dataset}.{table}')]


def test_a_short_outage_is_retried_and_loses_nothing(
    tmp_path, bigquery_emulator, tiny_model_dir, quick_client_retry):
  bq = bigquery_emulator
  proxy, figures = _run_in_outage(bq, 3, tmp_path, tiny_model_dir,
                                  bq.table('short_outage'), 3)
  assert proxy.refused == 3
  assert figures['predictions'] == len(ROWS)
  assert figures['dead_letters'] == 0 and figures['reconciled']
  rows = _keys_written(bq, 'short_outage')
  assert sorted(rows) == [r['key'] for r in ROWS]
  record('BigQuery 503 on 3 streaming inserts', {
      'inputs': len(ROWS), 'outputs': len(set(rows)),
      'duplicates': len(rows) - len(set(rows))})


@pytest.mark.faults
def test_a_long_outage_stops_the_job_and_a_rerun_writes_each_row_once(
    tmp_path, bigquery_emulator, tiny_model_dir, quick_client_retry):
  """Past the client's own retry (600 s in production) google-cloud-bigquery
  raises RetryError, which Beam's connector does not turn into failed rows:
  the bundle fails (Dataflow retries it; locally the job stops). Nothing is
  counted as written or dead-lettered, and a rerun once BigQuery is back
  writes every row once."""
  bq = bigquery_emulator
  table = bq.table('long_outage')
  with pytest.raises(Exception, match='503.*insertAll.*unavailable'):
    _run_in_outage(bq, None, tmp_path, tiny_model_dir, table, 2)
  assert not list(tmp_path.glob('dead-*'))
  figures = _run(tmp_path, tiny_model_dir, table, 2)
  assert figures['predictions'] == len(ROWS) and figures['reconciled']
  rows = _keys_written(bq, 'long_outage')
  assert sorted(rows) == [r['key'] for r in ROWS]
  record('BigQuery 503 on every streaming insert: job stops, rerun', {
      'inputs': len(ROWS), 'outputs': len(set(rows)),
      'duplicates': len(rows) - len(set(rows))})
