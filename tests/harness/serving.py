"""Fixtures for the online endpoint: tiny models made on the fly and a real
uvicorn server on a free loopback port, in a thread of the test process.

The server binds its socket before it starts (port 0: the kernel picks a free
port, no race), and is stopped by setting uvicorn's own exit flag and joining
its thread, so no process or port outlives a test.
"""
import contextlib
import socket
import threading
import time

import pytest

POSITIVE = [
    'a great film with wonderful acting',
    'great action scenes and a great story',
    'wonderful, moving and fast; I loved it',
    'the best film this year, great fun',
    'excellent and wonderful, truly great',
    'fast moving with several great scenes',
]
NEGATIVE = [
    'a boring film, I walked out',
    'very boring and far too slow',
    'terrible acting, a waste of time',
    'dull, boring, awful; I left half-way',
    'the worst film, boring and bad',
    'bad story, terrible and boring',
]


def train_tiny_sentiment_model(export_dir):
  """A few-kilobyte text classifier with the book's signatures, trained on
  a dozen sentences in a couple of seconds."""
  import keras
  import numpy as np
  import tensorflow as tf

  from models.serving_signatures import export_text_classifier
  keras.utils.set_random_seed(7)
  texts = POSITIVE + NEGATIVE
  labels = np.array([1.0] * len(POSITIVE) + [0.0] * len(NEGATIVE))
  vectorizer = keras.layers.TextVectorization(
      max_tokens=200, output_sequence_length=12)
  vectorizer.adapt(tf.constant(texts))
  model = keras.Sequential([
      keras.Input(shape=(12,), dtype='int64'),
      keras.layers.Embedding(200, 8),
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dense(1),
  ])
  model.compile(optimizer=keras.optimizers.Adam(0.05),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  model.fit(vectorizer(tf.constant(texts)).numpy(), labels, epochs=40,
            batch_size=len(texts), verbose=0)
  return export_text_classifier(vectorizer, model, str(export_dir))


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
def tiny_model_dir(tmp_path_factory):
  return train_tiny_sentiment_model(
      tmp_path_factory.mktemp('models') / 'tiny' / '1')


@pytest.fixture(scope='session')
def failing_model_dir(tmp_path_factory):
  return export_failing_model(tmp_path_factory.mktemp('models') / 'parse')


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
