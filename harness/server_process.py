"""The online endpoint as an operator runs it: a process of its own, ready
when /readyz answers, stopped with SIGTERM (killed if it outlives a minute).

  with serving_process([python, '-m', 'serving', ...], port) as base_url:
    httpx.post(f'{base_url}/v1/models/NAME:predict', json=...)
"""
import contextlib
import signal
import subprocess
import time

READY_TIMEOUT_S = 120


@contextlib.contextmanager
def serving_process(argv, port, ready_timeout=READY_TIMEOUT_S, **popen):
  """Starts `argv` (a server listening on 127.0.0.1:`port`), yields its base
  URL once ready; `popen`: more subprocess.Popen arguments (cwd, env; the
  log goes to a pipe, read if the server dies, unless `stdout` says
  otherwise)."""
  popen.setdefault('stdout', subprocess.PIPE)
  popen.setdefault('stderr', subprocess.STDOUT)
  process = subprocess.Popen(argv, text=True, **popen)
  base = f'http://127.0.0.1:{port}'
  try:
    wait_ready(process, base, ready_timeout)
    yield base
  finally:
    stop(process)


def wait_ready(process, base, timeout=READY_TIMEOUT_S):
  """Returns once the server `process` answers /readyz at `base`; raises
  with its log if it exits first, or once `timeout` seconds have passed."""
  import httpx
  deadline = time.monotonic() + timeout
  while True:
    if process.poll() is not None:
      log = process.stdout.read() if process.stdout else ''
      raise RuntimeError(f'server exited with {process.returncode}: {log}')
    try:
      if httpx.get(f'{base}/readyz', timeout=2).status_code == 200:
        return
    except httpx.TransportError:
      pass
    if time.monotonic() > deadline:
      raise RuntimeError('server never became ready')
    time.sleep(0.2)


def stop(process):
  """SIGTERM (the server's graceful shutdown), SIGKILL after 60 s."""
  process.send_signal(signal.SIGTERM)
  try:
    process.wait(60)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()
