"""Fixtures for the online endpoint: a failing model made on the fly, a real
uvicorn server on a free loopback port, in a thread of the test process, and
the helpers every serving test uses (a config from flags, an error's message).

The server binds its socket before it starts (port 0: the kernel picks a free
port, no race), and is stopped by setting uvicorn's own exit flag and joining
its thread, so no process or port outlives a test.
"""
import contextlib
import socket
import threading
import time

import pytest

def export_failing_model(export_dir):
  """A model whose signature fails at run time (not at input checking):
  `serving_default(text: string) -> value = to_number(text)` raises inside
  TensorFlow for text that is not a number, standing in for a model bug."""
  import tensorflow as tf

  class Parse(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name='text')])
    def parse(self, text):
      return {'value': tf.strings.to_number(text)}

  module = Parse()
  tf.saved_model.save(module, str(export_dir),
                      signatures={'serving_default': module.parse})
  return str(export_dir)


@pytest.fixture(scope='session')
def failing_model_dir(tmp_path_factory):
  return export_failing_model(tmp_path_factory.mktemp('models') / 'parse')


def make_config(model_dir, *flags):
  """The ServingConfig of `python -m serving --model_dir DIR FLAGS...`."""
  from serving import config as serving_config
  return serving_config.parse(['--model_dir', str(model_dir), *flags])


def error_of(response, status):
  """The message of an error response, once its status and JSON shape
  ({"error": ...}, both protocols) are checked."""
  assert response.status_code == status, response.text
  assert response.headers['content-type'] == 'application/json'
  return response.json()['error']


@contextlib.contextmanager
def running_server(app, start_timeout=30.0):
  """Serves `app` with uvicorn on 127.0.0.1:<free port>; yields the base URL."""
  import uvicorn
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind(('127.0.0.1', 0))
  port = sock.getsockname()[1]
  server = uvicorn.Server(uvicorn.Config(
      app, log_level='warning', access_log=False, lifespan='on',
      timeout_graceful_shutdown=5))
  thread = threading.Thread(target=server.run, kwargs={'sockets': [sock]},
                            name=f'uvicorn-{port}', daemon=True)
  thread.start()
  try:
    deadline = time.monotonic() + start_timeout
    while not server.started:
      if not thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError('test server did not start')
      time.sleep(0.01)
    yield f'http://127.0.0.1:{port}'
  finally:
    server.should_exit = True
    thread.join(15)
    if thread.is_alive():
      server.force_exit = True
      thread.join(5)
    sock.close()
