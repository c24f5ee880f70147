"""Loads heavy things (models, NLP pipelines, tables) once per process.

Beam may create many DoFn instances per worker process (and the DirectRunner
calls setup() for every streaming bundle), and a web server serves from many
threads: whatever the caller, a SavedModel, a LiteRT model or a spaCy
pipeline is loaded once per process and then shared.
"""
import threading

_LOADED = {}
_LOCK = threading.Lock()


def load_once(key, load):
  """Returns the object cached under `key`, calling `load()` the first time.

  The lock is held while loading, so concurrent first callers wait for the
  one load instead of loading twice.
  """
  with _LOCK:
    if key not in _LOADED:
      _LOADED[key] = load()
    return _LOADED[key]
