"""Small SavedModels built on the fly, so tests never wait for the demo model.

- `train_tiny_sentiment(export_dir)`: the demo architecture (vectorizer inside
  the graph, the book's signatures) trained for seconds on a few sentences.
- `export_poison_model(export_dir)`: a string model whose signature raises
  for any batch containing the text "POISON", to exercise failure isolation.
- `export_plain_model(export_dir)`: a float model with only a default
  signature, as a model exported elsewhere would be.
"""
from models.export.saved_model import export_text_classifier

POSITIVE = [
    'great film', 'wonderful acting', 'loved it', 'brilliant story',
    'a great and wonderful movie', 'excellent fun', 'superb cast',
    'a great film with wonderful acting',
    'great action scenes and a great story',
    'wonderful, moving and fast; I loved it',
    'the best film this year, great fun',
    'excellent and wonderful, truly great',
    'fast moving with several great scenes',
]
NEGATIVE = [
    'boring film', 'awful acting', 'hated it', 'terrible story',
    'a boring and awful movie', 'dull mess', 'waste of time',
    'a boring film, I walked out',
    'very boring and far too slow',
    'terrible acting, a waste of time',
    'dull, boring, awful; I left half-way',
    'the worst film, boring and bad',
    'bad story, terrible and boring',
]
POISON = 'POISON'


def train_tiny_sentiment(export_dir):
  import keras
  import numpy as np
  import tensorflow as tf
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


def export_poison_model(export_dir):
  import tensorflow as tf

  class Poison(tf.Module):

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name='reviews')])
    def serve(self, reviews):
      tf.debugging.Assert(
          tf.reduce_all(tf.not_equal(reviews, POISON)), ['poisoned batch'])
      length = tf.cast(tf.strings.length(reviews), tf.float32)
      return {'length': tf.reshape(length, [-1, 1])}

  module = Poison()
  tf.saved_model.save(module, str(export_dir),
                      signatures={'serving_default': module.serve})
  return str(export_dir)


def export_plain_model(export_dir):
  import tensorflow as tf

  class Doubler(tf.Module):

    def __init__(self):
      super().__init__()
      self.w = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x')])
    def serve(self, x):
      return {'y': x * self.w}

  module = Doubler()
  tf.saved_model.save(module, str(export_dir),
                      signatures={'serving_default': module.serve})
  return str(export_dir)
