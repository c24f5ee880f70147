"""What the BigQuery and Cloud Storage stand-in fixtures share.

The stand-ins (bqemulator, gcp-storage-emulator) live in a virtual environment
of their own, `.venv-standins` at the repository root (made by
`scripts/setup_standins.sh`, which `make test` runs): their pins, e.g. DuckDB
1.5.5, need not agree with the project's, and they run as separate processes.
Each is started on a free loopback port, awaited until it answers, and always
stopped by its own process id.

Tests skip, saying why, only when that environment is absent.
"""
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
VENV_VARIABLE = 'STANDINS_VENV'
PROJECT = 'test-project'
START_TIMEOUT_S = 90


def venv():
  """The stand-ins' virtual environment, or None when it is not installed."""
  path = pathlib.Path(os.environ.get(VENV_VARIABLE) or REPO / '.venv-standins')
  return path if (path / '.installed').exists() else None


def require_venv():
  path = venv()
  if path is None:
    pytest.skip(
        'local Google Cloud stand-ins not installed: run '
        'scripts/setup_standins.sh (make test does) to create .venv-standins')
  return path


_RUNNING = {}


@contextlib.contextmanager
def shared(name, start):
  """Yields the one running `name` of this test process.

  Each test module that imports a session-scoped fixture gets a fixture of
  its own, so a fixture would otherwise start its stand-in once per module.
  The first user starts it (`start()` is a context manager) and, at the end
  of the session, stops it; later users share it.
  """
  if name in _RUNNING:
    yield _RUNNING[name]
    return
  with start() as value:
    _RUNNING[name] = value
    try:
      yield value
    finally:
      del _RUNNING[name]


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def answers(url):
  try:
    with urllib.request.urlopen(url, timeout=1) as response:
      return response.status == 200
  except OSError:
    return False


@contextlib.contextmanager
def running(name, argv, ready_url, log_path, env=None):
  """Runs `argv` until the block ends; yields once `ready_url` answers 200.

  The process gets a session of its own, so stopping it (SIGTERM to its pid,
  SIGKILL after 10 s) never touches anything else.
  """
  log = open(log_path, 'wb')
  proc = subprocess.Popen(
      argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
      env={**os.environ, **(env or {})}, start_new_session=True)
  try:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(ready_url):
      if proc.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(
            f'{name} did not become ready at {ready_url}; see {log_path}')
      time.sleep(0.2)
    yield proc
  finally:
    if proc.poll() is None:
      os.kill(proc.pid, signal.SIGTERM)
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log.close()


@contextlib.contextmanager
def anonymous_google_auth():
  """google.auth.default answers anonymous credentials for the test project.

  Beam asks google.auth.default for Application Default Credentials (and
  caches the answer process-wide); the stand-ins need none, and the tests must
  never pick up a developer's real credentials.
  """
  import google.auth
  from google.auth.credentials import AnonymousCredentials
  from apache_beam.internal.gcp import auth as beam_auth

  def default(scopes=None, request=None, quota_project_id=None,
              default_scopes=None):
    del scopes, request, quota_project_id, default_scopes
    return AnonymousCredentials(), PROJECT

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(google.auth, 'default', default)
    patch.setattr(beam_auth._Credentials, '_credentials_init', False)
    patch.setattr(beam_auth._Credentials, '_credentials', None)
    try:
      yield PROJECT
    finally:
      beam_auth._Credentials._credentials_init = False
