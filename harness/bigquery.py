"""BigQuery stand-in (PyPI bqemulator, DuckDB-backed) as a pytest fixture.

Beam's BigQuery IO has no endpoint option, so for the session the fixture
points, in this process only, every client Beam builds at the stand-in:
  - the apitools BigqueryV2 client (tables, datasets, load/copy jobs),
  - google.cloud.bigquery.Client (streaming inserts, table metadata),
  - the Storage Read API client (ReadFromBigQuery method=DIRECT_READ);
google.auth.default answers anonymous credentials (see standins). Production
code never sees any of this: it uses Beam's defaults and Application Default
Credentials.

The stand-in shares the Cloud Storage stand-in's data folder
(BQEMU_GCS_LOCAL_ROOT), so load jobs read the files FILE_LOADS stages on gs://.

  from harness.bigquery import bigquery_emulator  # noqa: F401
  from harness.gcs import gcs_emulator  # noqa: F401
"""
import contextlib
import dataclasses

import pytest

from harness import standins

DATASET = 'serving'


def short_retry():
  """The insert retry the test clients use.

  Real BigQuery answers a row it cannot store with HTTP 200 and per-row
  insertErrors; the stand-in answers HTTP 500 for the whole request, which the
  client's default retry repeats for 600 s before raising RetryError (a bundle
  failure). Retrying only what is really transient, briefly, lets the 500 reach
  Beam as the rows' error, so they take the failed-rows path as they would on
  BigQuery.
  """
  from google.api_core import exceptions
  from google.api_core import retry
  return retry.Retry(
      predicate=retry.if_exception_type(
          exceptions.TooManyRequests, exceptions.ServiceUnavailable,
          ConnectionError),
      initial=0.05, maximum=0.5, timeout=5)


@dataclasses.dataclass(frozen=True)
class BigQueryStandIn:
  rest_endpoint: str   # http://127.0.0.1:PORT
  grpc_target: str     # 127.0.0.1:PORT (Storage Read/Write API)
  project: str
  dataset: str         # created at start

  def table(self, name):
    """'project:dataset.name', as pipelines take tables on the command line."""
    return f'{self.project}:{self.dataset}.{name}'

  def client(self):
    from google.cloud import bigquery
    return bigquery.Client(project=self.project)  # patched: the stand-in


def _patch_clients(patch, rest_endpoint, grpc_target):
  import grpc
  from apache_beam.internal.http_client import get_new_http
  from apache_beam.io.gcp import bigquery_tools
  from apache_beam.io.gcp.internal.clients import bigquery as apitools_bq
  from google.api_core import client_options
  from google.auth.credentials import AnonymousCredentials
  from google.cloud import bigquery
  from google.cloud import bigquery_storage_v1
  from google.cloud.bigquery_storage_v1.services.big_query_read.transports \
      import BigQueryReadGrpcTransport

  # The library's own classes, also when an earlier patch is in place.
  client_class = getattr(bigquery.Client, 'library_class', bigquery.Client)
  read_class = getattr(bigquery_storage_v1.BigQueryReadClient,
                       'library_class', bigquery_storage_v1.BigQueryReadClient)

  class EmulatorClient(client_class):
    library_class = client_class

    def __init__(self, project=None, credentials=None, _http=None,
                 location=None, default_query_job_config=None,
                 default_load_job_config=None, client_info=None,
                 client_options=None):
      del credentials, client_options
      super().__init__(
          project=project or standins.PROJECT,
          credentials=AnonymousCredentials(), _http=_http, location=location,
          default_query_job_config=default_query_job_config,
          default_load_job_config=default_load_job_config,
          client_info=client_info,
          client_options=client_options_for_rest)

    def insert_rows_json(self, *args, retry=None, **kwargs):
      return super().insert_rows_json(
          *args, retry=retry or short_retry(), **kwargs)

  client_options_for_rest = client_options.ClientOptions(
      api_endpoint=rest_endpoint)

  class EmulatorReadClient(read_class):
    library_class = read_class

    def __init__(self, *args, **kwargs):
      del args, kwargs
      super().__init__(transport=BigQueryReadGrpcTransport(
          channel=grpc.insecure_channel(grpc_target)))

  def apitools_client(pipeline_options):
    del pipeline_options
    return apitools_bq.BigqueryV2(
        url=f'{rest_endpoint}/bigquery/v2/', http=get_new_http(),
        get_credentials=False, response_encoding='utf8')

  patch.setattr(bigquery, 'Client', EmulatorClient)
  patch.setattr(bigquery_storage_v1, 'BigQueryReadClient', EmulatorReadClient)
  patch.setattr(bigquery_tools.BigQueryWrapper, '_bigquery_client',
                staticmethod(apitools_client))


@contextlib.contextmanager
def clients_via(stand_in, rest_endpoint):
  """Points Beam's BigQuery clients at `rest_endpoint` for the block: a
  harness.fault_proxy.FaultProxy in front of `stand_in`, say."""
  with pytest.MonkeyPatch.context() as patch:
    _patch_clients(patch, rest_endpoint, stand_in.grpc_target)
    yield


@contextlib.contextmanager
def _start(home, gcs):
  venv = standins.require_venv()
  rest_port, grpc_port = standins.free_port(), standins.free_port()
  rest = f'http://127.0.0.1:{rest_port}'
  argv = [str(venv / 'bin' / 'bqemulator'), 'start',
          '--rest-host', '127.0.0.1', '--rest-port', str(rest_port),
          '--grpc-host', '127.0.0.1', '--grpc-port', str(grpc_port),
          '--project', standins.PROJECT, '--log-level', 'warning']
  env = {
      # DuckDB finds the spatial and avro extensions that setup_standins.sh
      # installed offline under <venv>/duckdb-home/.duckdb/extensions.
      'HOME': str(venv / 'duckdb-home'),
      'BQEMU_GCS_LOCAL_ROOT': str(gcs.objects_root),
  }
  with standins.running('bqemulator', argv, f'{rest}/readyz',
                        home / 'emulator.log', env):
    with pytest.MonkeyPatch.context() as patch:
      _patch_clients(patch, rest, f'127.0.0.1:{grpc_port}')
      stand_in = BigQueryStandIn(
          rest, f'127.0.0.1:{grpc_port}', standins.PROJECT, DATASET)
      stand_in.client().create_dataset(DATASET, exists_ok=True)
      yield stand_in


@pytest.fixture(scope='session')
def bigquery_emulator(tmp_path_factory, gcs_emulator):
  """Yields the running BigQueryStandIn (one per test session), with the
  dataset `serving` created and Beam's clients pointed at it."""
  standins.require_venv()
  with standins.shared('bigquery', lambda: _start(
      tmp_path_factory.mktemp('bigquery'), gcs_emulator)) as stand_in:
    yield stand_in
