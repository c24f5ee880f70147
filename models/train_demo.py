"""Trains the demo sentiment model on the IMDB train split and exports it.

Its last step writes baseline_stats.json beside the export (the train
split, scored by the exported model: models/baseline_stats.py), the
reference of the evaluation's drift.

A deliberately small, fast model (TextVectorization -> Embedding -> average
pooling -> Dense): it trains on 2 cores in well under a minute and reaches
~0.87 held-out accuracy, enough to make the serving patterns meaningful.
Seeds and op determinism are fixed so reruns produce the same model.

    python -m models.train_demo [--data_dir data] [--export_dir data/models/sentiment/1]
"""
import argparse
import os
import time

from common import feature_stats
from models import baseline_stats
from models import demo_data
from models.export.saved_model import INPUT_NAME
from models.export.saved_model import export_text_classifier

SEED = 42
MAX_TOKENS = 20000
SEQUENCE_LENGTH = 256
EMBEDDING_DIM = 32
EPOCHS = 4
MIN_ACCURACY = 0.85
DEFAULT_EXPORT_DIR = os.path.join('data', 'models', 'sentiment', '1')


def _labelled(reviews, split):
  rows = [r for r in reviews if r['split'] == split]
  return ([r['text'] for r in rows],
          [1.0 if r['label'] == 'positive' else 0.0 for r in rows])


def train(reviews, epochs=EPOCHS, max_tokens=MAX_TOKENS,
          sequence_length=SEQUENCE_LENGTH, embedding_dim=EMBEDDING_DIM):
  """Returns (vectorizer, logits model, held-out accuracy)."""
  import keras
  import numpy as np
  import tensorflow as tf
  keras.utils.set_random_seed(SEED)
  tf.config.experimental.enable_op_determinism()

  train_x, train_y = _labelled(reviews, 'train')
  test_x, test_y = _labelled(reviews, 'test')
  vectorizer = keras.layers.TextVectorization(
      max_tokens=max_tokens, output_sequence_length=sequence_length)
  vectorizer.adapt(tf.constant(train_x), batch_size=1024)

  model = keras.Sequential([
      keras.Input(shape=(sequence_length,), dtype='int64'),
      keras.layers.Embedding(max_tokens, embedding_dim),
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dropout(0.2),
      keras.layers.Dense(16, activation='relu'),
      keras.layers.Dense(1, name='logits'),
  ])
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.BinaryCrossentropy(from_logits=True),
                metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
  tokens = vectorizer(tf.constant(train_x)).numpy()
  test_tokens = vectorizer(tf.constant(test_x)).numpy()
  model.fit(tokens, np.array(train_y), batch_size=128, epochs=epochs,
            shuffle=True, verbose=2)
  _, accuracy = model.evaluate(test_tokens, np.array(test_y), verbose=0)
  return vectorizer, model, float(accuracy)


def write_baseline(reviews, export_dir):
  """baseline_stats.json of the train split, beside the export."""
  texts, _ = _labelled(reviews, 'train')
  return baseline_stats.write_for_texts(
      export_dir, INPUT_NAME, texts, 'demo reviews, train split')


def build(data_dir='data', export_dir=DEFAULT_EXPORT_DIR):
  """Trains and exports once; a no-op when the export and its baseline
  statistics already exist (an older export gets its baseline)."""
  exported = os.path.exists(os.path.join(export_dir, 'saved_model.pb'))
  if exported and os.path.exists(os.path.join(
      export_dir, feature_stats.FILE_NAME)):
    return export_dir
  demo_data.prepare(data_dir)
  reviews = demo_data.load_reviews(os.path.join(data_dir, 'cache'))
  if exported:
    write_baseline(reviews, export_dir)
    return export_dir
  started = time.time()
  vectorizer, model, accuracy = train(reviews)
  print(f'demo model: held-out accuracy {accuracy:.4f} on the test split '
        f'(trained in {time.time() - started:.1f} s)')
  if accuracy < MIN_ACCURACY:
    raise RuntimeError(f'accuracy {accuracy:.4f} < {MIN_ACCURACY}')
  export_text_classifier(vectorizer, model, export_dir)
  print(f'demo model: exported to {export_dir}')
  write_baseline(reviews, export_dir)
  return export_dir


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='data')
  parser.add_argument('--export_dir', default=DEFAULT_EXPORT_DIR)
  args = parser.parse_args(argv)
  build(args.data_dir, args.export_dir)


if __name__ == '__main__':
  main()
