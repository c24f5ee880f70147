"""The phase-1 prediction library: a .tflite model run by the LiteRT interpreter.

The counterpart of models/runtime/predictor.py for the cheap first phase. A model file
`NAME.tflite` takes int32 token ids [batch, sequence_length] and returns the
positive probability [batch, 1]; its tokenizer is the file beside it,
`NAME.tokenizer.json` (the interpreter has no string ops, so text becomes ids
in Python, with exactly the vocabulary the model was trained on).

- Batched: the input tensor is resized to the batch (and re-allocated only
  when the batch size changes), so one interpreter call scores many records.
- Loaded once per process: `load(path)` caches by path under a lock.
- Thread safe: a LiteRT interpreter must not be invoked from two threads at
  once, so every thread gets its own interpreter over the same model bytes.
"""
import json
import threading

import numpy as np

from common.process_cache import load_once
from models.runtime.tokenizer import Tokenizer

DEFAULT_BATCH_SIZE = 512


def tokenizer_path(tflite_path):
  """Where the tokenizer of `tflite_path` lives: beside it, same stem."""
  stem = tflite_path[:-len('.tflite')] if tflite_path.endswith(
      '.tflite') else tflite_path
  return stem + '.tokenizer.json'


def _read_bytes(path):
  """Reads a local or gs:// file (Beam's filesystems know both)."""
  if '://' not in path:
    with open(path, 'rb') as f:
      return f.read()
  from apache_beam.io.filesystems import FileSystems
  with FileSystems.open(path) as f:
    return f.read()


def load(tflite_path):
  """Returns the process-wide LitePredictor for `tflite_path`, loading it once."""
  return load_once(('tflite', tflite_path), lambda: LitePredictor(tflite_path))


class LitePredictor:
  """A quantized text classifier: Python tokenizer + LiteRT interpreter."""

  def __init__(self, tflite_path, tokenizer=None):
    self.path = tflite_path
    self.model_bytes = _read_bytes(tflite_path)
    if tokenizer is None:
      spec = json.loads(_read_bytes(tokenizer_path(tflite_path)))
      tokenizer = Tokenizer(spec['vocabulary'], spec['sequence_length'])
    self.tokenizer = tokenizer
    self._local = threading.local()
    self._interpreter()  # fail at load time, not on the first batch

  def _interpreter(self):
    state = getattr(self._local, 'state', None)
    if state is None:
      from ai_edge_litert.interpreter import Interpreter
      interpreter = Interpreter(model_content=self.model_bytes)
      inp = interpreter.get_input_details()[0]
      if inp['shape'][-1] != self.tokenizer.sequence_length:
        raise ValueError(
            f'{self.path}: model takes {inp["shape"][-1]} token ids but its '
            f'tokenizer produces {self.tokenizer.sequence_length}')
      out = interpreter.get_output_details()[0]
      state = self._local.state = {
          'interpreter': interpreter, 'input': inp['index'],
          'output': out['index'], 'batch': None}
    return state

  def predict_ids(self, ids):
    """Scores one batch of token ids [n, sequence_length]; returns float [n]."""
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    if len(ids) == 0:
      return np.zeros((0,), dtype=np.float32)
    state = self._interpreter()
    interpreter = state['interpreter']
    if state['batch'] != len(ids):
      interpreter.resize_tensor_input(state['input'], list(ids.shape))
      interpreter.allocate_tensors()
      state['batch'] = len(ids)
    interpreter.set_tensor(state['input'], ids)
    interpreter.invoke()
    return interpreter.get_tensor(state['output']).reshape(-1).copy()

  def predict_texts(self, texts, batch_size=DEFAULT_BATCH_SIZE):
    """Positive probabilities for `texts`, in order, scored `batch_size` at a time."""
    texts = list(texts)
    scores = [self.predict_ids(self.tokenizer.encode(texts[i:i + batch_size]))
              for i in range(0, len(texts), batch_size)]
    return np.concatenate(scores) if scores else np.zeros((0,), np.float32)
