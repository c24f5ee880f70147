"""Cloud Storage stand-in (PyPI gcp-storage-emulator) as a pytest fixture.

google-cloud-storage, and through it Beam's gs:// file system, talks to the
host in STORAGE_EMULATOR_HOST; the fixture sets it for the session. Objects
are plain files under `<data_dir>/.cloudstorage/<bucket>/<name>`, which is
what lets the BigQuery stand-in read the files a FILE_LOADS write stages.

  from harness.gcs import gcs_emulator  # noqa: F401
"""
import contextlib
import dataclasses
import pathlib

import pytest

from harness import standins

BUCKET = 'test-bucket'


@dataclasses.dataclass(frozen=True)
class GcsStandIn:
  endpoint: str          # http://127.0.0.1:PORT
  bucket: str            # created at start
  objects_root: pathlib.Path  # <root>/<bucket>/<object name> on disk

  def client(self):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    return storage.Client(
        project=standins.PROJECT, credentials=AnonymousCredentials(),
        client_options={'api_endpoint': self.endpoint})

  def url(self, name):
    return f'gs://{self.bucket}/{name}'


@contextlib.contextmanager
def _start(home):
  venv = standins.require_venv()
  port = standins.free_port()
  endpoint = f'http://127.0.0.1:{port}'
  argv = [str(venv / 'bin' / 'gcp-storage-emulator'), '--data-dir',
          str(home / 'data'), 'start', '--host', '127.0.0.1', '--port',
          str(port), '--default-bucket', BUCKET, '--quiet']
  with standins.running('gcp-storage-emulator', argv,
                        f'{endpoint}/storage/v1/b', home / 'emulator.log'):
    with standins.anonymous_google_auth(), \
        pytest.MonkeyPatch.context() as patch:
      patch.setenv('STORAGE_EMULATOR_HOST', endpoint)
      yield GcsStandIn(endpoint, BUCKET, home / 'data' / '.cloudstorage')


@pytest.fixture(scope='session')
def gcs_emulator(tmp_path_factory):
  """Yields the running GcsStandIn (one per test session):
  STORAGE_EMULATOR_HOST points at it and google.auth.default answers
  anonymous credentials (see standins)."""
  standins.require_venv()
  with standins.shared(
      'gcs', lambda: _start(tmp_path_factory.mktemp('gcs'))) as stand_in:
    yield stand_in
