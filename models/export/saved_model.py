"""Exports a text classifier as a SavedModel with the book's serving signatures.

The stateless-serving-function pattern: the exported function takes raw
strings (the vectorizer is inside the graph), so clients never reimplement
preprocessing, and it is the same function in batch, streaming and online.

Signatures written:
  serving_default(reviews: string[None])
      -> positive_review_logits: float[None, 1]
         positive_review_probability: float[None, 1]  (sigmoid of the logits)
  keyed_prediction(key: string[None], reviews: string[None])
      -> key (passed through unchanged) + the two outputs above
"""

INPUT_NAME = 'reviews'
LOGITS = 'positive_review_logits'
PROBABILITY = 'positive_review_probability'
KEY = 'key'


def export_text_classifier(vectorizer, model, export_dir):
  """Writes `vectorizer` -> `model` (which outputs logits) to `export_dir`."""
  import keras
  import tensorflow as tf

  def add_prob(reviews):
    logits = model(vectorizer(reviews), training=False)
    return {LOGITS: logits, PROBABILITY: tf.sigmoid(logits)}

  def keyed_prediction(key, reviews):
    outputs = add_prob(reviews)
    outputs[KEY] = tf.identity(key)
    return outputs

  archive = keras.export.ExportArchive()
  archive.track(vectorizer)
  archive.track(model)
  archive.add_endpoint(
      'serving_default', add_prob,
      input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
  archive.add_endpoint(
      'keyed_prediction', keyed_prediction,
      input_signature=[tf.TensorSpec([None], tf.string, name=KEY),
                       tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
  archive.write_out(export_dir, verbose=False)
  return export_dir
