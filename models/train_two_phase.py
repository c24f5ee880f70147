"""Trains the two models of the two-phase (cascade) demo and exports both.

Phase 1 is small and cheap: token ids -> Embedding(16) -> average -> logit,
trained on ids from the Python tokenizer (models/runtime/tokenizer.py) so training and
serving tokenize identically; it is then converted to a quantized .tflite file
for the LiteRT interpreter (models/export/tflite.py).

Phase 2 is genuinely larger and more accurate: a unigram+bigram TF-IDF over a
100k-term vocabulary -> Dense(16) -> logit (~1.6M weights, against phase 1's
~160k), exported as a SavedModel with the book's serving signatures so the
batch pipeline's model handler serves it.

The forwarding band for `--forward uncertain:LOW,HIGH` is chosen on a
validation slice of the TRAIN split (never on the test split the report uses):
the narrowest band around 0.5 whose cascade accuracy on validation is within
half a point of phase 2 alone. It is written to two_phase.json.

Outputs under --output_dir (default data/models/two_phase):
  phase1/model.keras, phase1/tokenizer.json      the float phase-1 model
  phase1.tflite, phase1.tokenizer.json            written by tflite_export
  phase2/1/                                       the phase-2 SavedModel
  two_phase.json                                  accuracies, band, timings

    python -m models.train_two_phase [--data_dir data] [--output_dir data/models/two_phase]
"""
import argparse
import hashlib
import json
import os
import time

from models import demo_data

SEED = 42
DEFAULT_OUTPUT_DIR = os.path.join('data', 'models', 'two_phase')
VALIDATION_PERCENT = 10

PHASE1_MAX_TOKENS = 10000
PHASE1_SEQUENCE_LENGTH = 200
PHASE1_EMBEDDING_DIM = 16
PHASE1_EPOCHS = 6

PHASE2_MAX_TOKENS = 100000
PHASE2_HIDDEN = 16
PHASE2_EPOCHS = 3

# The band is chosen as the narrowest one (in steps of 5% of records) that
# keeps validation cascade accuracy within this much of phase 2 alone.
BAND_TOLERANCE = 0.005
MAX_FORWARD_FRACTION = 0.40


def split_train_validation(reviews):
  """(train, validation, test) lists; validation is a stable slice of train."""
  def bucket(r):
    return int(hashlib.sha256(r['key'].encode()).hexdigest()[:8], 16) % 100
  train = [r for r in reviews if r['split'] == 'train']
  test = [r for r in reviews if r['split'] == 'test']
  validation = [r for r in train if bucket(r) < VALIDATION_PERCENT]
  train = [r for r in train if bucket(r) >= VALIDATION_PERCENT]
  return train, validation, test


def texts_labels(rows):
  import numpy as np
  return ([r['text'] for r in rows],
          np.array([1.0 if r['label'] == 'positive' else 0.0 for r in rows],
                   dtype='float32'))


def _seed():
  import keras
  import tensorflow as tf
  keras.utils.set_random_seed(SEED)
  tf.config.experimental.enable_op_determinism()


def train_phase1(train_rows, validation_rows):
  """Returns (tokenizer, keras model taking int32 ids and returning logits)."""
  import keras
  import tensorflow as tf
  from models.runtime.tokenizer import Tokenizer
  _seed()
  train_x, train_y = texts_labels(train_rows)
  val_x, val_y = texts_labels(validation_rows)
  vectorizer = keras.layers.TextVectorization(
      max_tokens=PHASE1_MAX_TOKENS,
      output_sequence_length=PHASE1_SEQUENCE_LENGTH)
  vectorizer.adapt(tf.constant(train_x), batch_size=1024)
  tokenizer = Tokenizer.from_vectorizer(vectorizer)
  model = keras.Sequential([
      keras.Input(shape=(PHASE1_SEQUENCE_LENGTH,), dtype='int32'),
      keras.layers.Embedding(PHASE1_MAX_TOKENS, PHASE1_EMBEDDING_DIM),
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dense(1, name='logits'),
  ])
  model.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=keras.losses.BinaryCrossentropy(from_logits=True),
                metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
  model.fit(tokenizer.encode(train_x), train_y, batch_size=128,
            epochs=PHASE1_EPOCHS, shuffle=True, verbose=2,
            validation_data=(tokenizer.encode(val_x), val_y),
            callbacks=[keras.callbacks.EarlyStopping(
                monitor='val_binary_accuracy', patience=1,
                restore_best_weights=True)])
  return tokenizer, model


def train_phase2(train_rows, validation_rows):
  """Returns (TF-IDF vectorizer, keras model taking TF-IDF, returning logits)."""
  import keras
  import tensorflow as tf
  _seed()
  train_x, train_y = texts_labels(train_rows)
  val_x, val_y = texts_labels(validation_rows)
  vectorizer = keras.layers.TextVectorization(
      max_tokens=PHASE2_MAX_TOKENS, ngrams=2, output_mode='tf_idf')
  vectorizer.adapt(tf.constant(train_x), batch_size=1024)

  def dataset(x, y, shuffle):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
      ds = ds.shuffle(len(x), seed=SEED)
    return ds.batch(128).map(lambda t, l: (vectorizer(t), l)).prefetch(2)

  model = keras.Sequential([
      keras.Input(shape=(PHASE2_MAX_TOKENS,)),
      keras.layers.Dropout(0.5),
      keras.layers.Dense(PHASE2_HIDDEN, activation='relu'),
      keras.layers.Dropout(0.5),
      keras.layers.Dense(1, name='logits'),
  ])
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.BinaryCrossentropy(from_logits=True),
                metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
  model.fit(dataset(train_x, train_y, True), epochs=PHASE2_EPOCHS, verbose=2,
            validation_data=dataset(val_x, val_y, False),
            callbacks=[keras.callbacks.EarlyStopping(
                monitor='val_binary_accuracy', patience=1,
                restore_best_weights=True)])
  return vectorizer, model


def choose_band(p1, p2, labels):
  """The narrowest symmetric band around 0.5 for `uncertain:LOW,HIGH`.

  p1, p2: phase-1 / phase-2 positive probabilities on validation records;
  labels: 0/1. Returns (low, high, forward fraction, cascade accuracy).
  """
  import numpy as np
  p1, p2, labels = (np.asarray(a, dtype='float64') for a in (p1, p2, labels))
  target = np.mean((p2 >= 0.5) == labels) - BAND_TOLERANCE
  margin = np.abs(p1 - 0.5)
  best = None
  for fraction in np.arange(0.05, MAX_FORWARD_FRACTION + 1e-9, 0.05):
    half_width = float(np.quantile(margin, fraction))
    forwarded = margin <= half_width
    decided = np.where(forwarded, p2, p1) >= 0.5
    accuracy = float(np.mean(decided == labels))
    best = (round(0.5 - half_width, 4), round(0.5 + half_width, 4),
            float(np.mean(forwarded)), accuracy)
    if accuracy >= target:
      break
  return best


def build(data_dir='data', output_dir=DEFAULT_OUTPUT_DIR, force=False):
  """Trains, exports and converts once; a no-op when outputs exist."""
  import numpy as np
  from models.export import tflite as tflite_export
  from models.export.saved_model import export_text_classifier

  meta_path = os.path.join(output_dir, 'two_phase.json')
  if os.path.exists(meta_path) and not force:
    return meta_path
  demo_data.prepare(data_dir)
  reviews = demo_data.load_reviews(os.path.join(data_dir, 'cache'))
  train_rows, validation_rows, test_rows = split_train_validation(reviews)
  val_x, val_y = texts_labels(validation_rows)

  started = time.time()
  tokenizer, phase1 = train_phase1(train_rows, validation_rows)
  phase1_seconds = time.time() - started
  phase1_dir = os.path.join(output_dir, 'phase1')
  os.makedirs(phase1_dir, exist_ok=True)
  phase1.save(os.path.join(phase1_dir, 'model.keras'))
  tokenizer.save(os.path.join(phase1_dir, 'tokenizer.json'))
  print(f'phase 1: trained in {phase1_seconds:.1f} s, '
        f'{phase1.count_params():,} weights')

  started = time.time()
  vectorizer, phase2 = train_phase2(train_rows, validation_rows)
  phase2_seconds = time.time() - started
  phase2_dir = os.path.join(output_dir, 'phase2', '1')
  export_text_classifier(vectorizer, phase2, phase2_dir)
  print(f'phase 2: trained in {phase2_seconds:.1f} s, '
        f'{phase2.count_params():,} weights, exported to {phase2_dir}')

  tflite_path = os.path.join(output_dir, 'phase1.tflite')
  conversion = tflite_export.export(phase1_dir, tflite_path, data_dir)

  from models.runtime import lite_predictor
  from models.runtime import predictor
  p1 = lite_predictor.load(tflite_path).predict_texts(val_x)
  p2 = np.asarray(predictor.load(phase2_dir).predict_columns(
      {'reviews': val_x})['positive_review_probability'])
  low, high, forward_fraction, cascade_accuracy = choose_band(p1, p2, val_y)
  meta = {
      'phase1': {'tflite': 'phase1.tflite',
                 'tokenizer': 'phase1.tokenizer.json',
                 'weights': int(phase1.count_params()),
                 'train_seconds': round(phase1_seconds, 1),
                 'validation_accuracy': float(np.mean((p1 >= 0.5) == val_y))},
      'phase2': {'saved_model': 'phase2/1',
                 'weights': int(phase2.count_params()),
                 'train_seconds': round(phase2_seconds, 1),
                 'validation_accuracy': float(np.mean((p2 >= 0.5) == val_y))},
      'conversion': conversion,
      'forward': f'uncertain:{low},{high}',
      'validation': {'records': len(val_x),
                     'forward_fraction': forward_fraction,
                     'cascade_accuracy': cascade_accuracy},
  }
  with open(meta_path, 'w') as f:
    json.dump(meta, f, indent=2)
  print(f'two-phase: validation phase 1 {meta["phase1"]["validation_accuracy"]:.4f}, '
        f'phase 2 {meta["phase2"]["validation_accuracy"]:.4f}, cascade '
        f'{cascade_accuracy:.4f} forwarding {forward_fraction:.1%} with '
        f'--forward {meta["forward"]}  ({meta_path})')
  return meta_path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='data',
                      help='Folder holding the wheel cache and data/demo.')
  parser.add_argument('--output_dir', default=DEFAULT_OUTPUT_DIR,
                      help='Where the two models and two_phase.json go.')
  parser.add_argument('--force', action='store_true',
                      help='Retrain even if two_phase.json exists.')
  args = parser.parse_args(argv)
  build(args.data_dir, args.output_dir, args.force)


if __name__ == '__main__':
  main()
