"""One row of the prediction log, and which keys are logged.

The continued-model-evaluation pattern needs a table of what the model saw
and said, joined later with ground truth. Rows follow the book's table:
model, model_version, time, raw_data ({"instances": [...]}), raw_prediction
({"predictions": [...]}), groundtruth (null until labels arrive), plus the
client key the labels are joined on. Batch, streaming and online serving all
build rows here so the evaluation pipeline reads one shape.

Sampling is by key, not by chance, so that reruns (and the different serving
paths) log the same keys and a logged key can always be evaluated.
"""
import hashlib

_SCALE = float(1 << 64)


def sampled(key, rate):
  """True if `key` is in the deterministic `rate` (0..1) sample.

  The first 8 bytes of sha256(str(key)) as a fraction of 2**64 are compared
  with `rate`: stable across processes, runs and languages.
  """
  if rate >= 1:
    return True
  if rate <= 0:
    return False
  digest = hashlib.sha256(str(key).encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') < rate * _SCALE


def log_row(model, model_version, key, instance, prediction, time):
  """The prediction-log row for one instance; `time` is ISO-8601 UTC."""
  return {
      'key': key,
      'model': model,
      'model_version': model_version,
      'time': time,
      'raw_data': {'instances': [instance]},
      'raw_prediction': {'predictions': [prediction]},
      'groundtruth': None,
  }
