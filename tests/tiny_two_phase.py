"""A tiny phase-1 model built on the fly: the real tokenizer, training and
TFLite conversion code paths, on a few sentences, in seconds.

Import the fixture into a test module:
    from tests.tiny_two_phase import tiny_phase1  # noqa: F401
"""
import pytest

from tests.tiny_models import NEGATIVE
from tests.tiny_models import POSITIVE

SEQUENCE_LENGTH = 12
# Large enough that Optimize.DEFAULT quantizes the embedding table (the
# converter leaves weights under 1,024 elements in float).
MAX_TOKENS = 2000
EMBEDDING_DIM = 16


def build_tiny_phase1(directory):
  """Trains, converts (quantized) and writes `phase1.tflite` + tokenizer.

  Returns (tflite path, Tokenizer, keras model returning logits).
  """
  import keras
  import numpy as np
  import tensorflow as tf
  from models.runtime.lite_predictor import tokenizer_path
  from models.export.tflite import convert
  from models.runtime.tokenizer import Tokenizer
  keras.utils.set_random_seed(11)
  texts = POSITIVE + NEGATIVE
  labels = np.array([1.0] * len(POSITIVE) + [0.0] * len(NEGATIVE))
  vectorizer = keras.layers.TextVectorization(
      max_tokens=MAX_TOKENS, output_sequence_length=SEQUENCE_LENGTH)
  vectorizer.adapt(tf.constant(texts))
  tokenizer = Tokenizer.from_vectorizer(vectorizer)
  model = keras.Sequential([
      keras.Input(shape=(SEQUENCE_LENGTH,), dtype='int32'),
      keras.layers.Embedding(MAX_TOKENS, EMBEDDING_DIM),
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dense(1),
  ])
  model.compile(optimizer=keras.optimizers.Adam(0.05),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  model.fit(tokenizer.encode(texts), labels, epochs=30, verbose=0)
  directory.mkdir(parents=True, exist_ok=True)
  path = str(directory / 'phase1.tflite')
  with open(path, 'wb') as f:
    f.write(convert(model, SEQUENCE_LENGTH, quantize=True))
  tokenizer.save(tokenizer_path(path))
  return path, tokenizer, model


@pytest.fixture(scope='session')
def tiny_phase1(tmp_path_factory):
  return build_tiny_phase1(tmp_path_factory.mktemp('two_phase'))
