"""The prediction-log row (continuous evaluation), and which keys to log.

The online endpoint and the Beam pipelines both log predictions for continuous
evaluation; building the row here (pure Python, no TensorFlow or Beam) keeps
the two writers' rows identical, so one evaluation job reads both.

Row columns (the book's continuous-evaluation table, plus the client key):
  model, model_version, time (ISO-8601 UTC), key,
  raw_data        JSON string {"instances": [instance]}
  raw_prediction  JSON string {"predictions": [prediction]}
  groundtruth     null (filled in later, when the label is known)
  role            optional: 'shadow' for a candidate version's prediction
                  (pipelines.stream_predict's gate), which no client saw;
                  absent (or 'live') for the predictions that were served

Evaluation slices by model_version, so a shadow version's rows are measured
beside the live one's, never mixed into it.

Sampling is by a hash of the key rather than by a random draw, so a rerun (or
the batch and online paths) log the same keys, and ground truth joined later
finds its prediction.
"""
import datetime
import functools
import hashlib
import json

import orjson

from common.schema import Field
from common.schema import Shape

PARTITION = 'time'
# The book's continuous-evaluation table, plus the client key; a table of it
# is partitioned on the prediction time. The JSON shapes are JSON text, as in
# the book.
SHAPE = Shape('prediction_log', (
    Field('key', 'string', required=True),
    Field('model', 'string', required=True),
    Field('model_version', 'string', required=True),
    Field(PARTITION, 'timestamp', required=True),
    Field('raw_data', 'json', description='JSON {"instances": [...]}'),
    Field('raw_prediction', 'json',
          description='JSON {"predictions": [...]}'),
    Field('groundtruth', 'json',
          description='JSON {"predictions": [...]}, filled in later'),
    Field('role', 'string',
          description='live (or absent): served; shadow: a candidate\'s'),
), partition=PARTITION)
LIVE = 'live'
SHADOW = 'shadow'
ROLES = (LIVE, SHADOW)

_TWO_TO_64 = float(2**64)


def sampled(key, rate):
  """Whether `key` falls in the logged fraction `rate` (0..1), deterministically.

  The first 8 bytes of sha256(str(key)) read as a fraction of 2**64 are
  compared with `rate`, so the same key is always in or out, whatever process
  or machine asks.
  """
  if rate >= 1:
    return True
  if rate <= 0:
    return False
  digest = hashlib.sha256(str(key).encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') / _TWO_TO_64 < rate


@functools.lru_cache(maxsize=64)
def format_time(time):
  """ISO-8601 UTC with microseconds and a 'Z' suffix.

  Cached: a batch job logs many rows with the same time (to the second).

  Accepts an aware datetime (converted to UTC), an ISO-8601 string with an
  offset, or seconds since the epoch; a naive time is refused, since its
  zone would be a guess.
  """
  if isinstance(time, str):
    time = datetime.datetime.fromisoformat(time)
  if isinstance(time, (int, float)):
    time = datetime.datetime.fromtimestamp(time, datetime.timezone.utc)
  if time.tzinfo is None:
    raise ValueError('naive datetime: pass an aware (UTC) time')
  time = time.astimezone(datetime.timezone.utc)
  return time.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _compact_json(value):
  """Compact JSON, UTF-8 unescaped. orjson (several times faster on
  review-sized text, the log's hot path: benchmarks/optimisations.md); the
  standard library for what orjson refuses (non-string keys, integers over
  64 bits)."""
  try:
    return orjson.dumps(value).decode('utf-8')
  except TypeError:
    return json.dumps(value, separators=(',', ':'), ensure_ascii=False)


def log_row(model, model_version, key, instance, prediction, time,
            role=None):
  """Returns one continuous-evaluation row (a JSON-serialisable dict).

  `instance` is the instance as the client sent it and `prediction` what it
  got back; both must be JSON-serialisable. `role` (ROLES) is written only
  when given, so the rows of jobs without a shadow are unchanged.
  """
  row = {
      'model': model,
      'model_version': model_version,
      'time': format_time(time),
      'key': key,
      'raw_data': _compact_json({'instances': [instance]}),
      'raw_prediction': _compact_json({'predictions': [prediction]}),
      'groundtruth': None,
  }
  if role is not None:
    if role not in ROLES:
      raise ValueError(f'role must be one of {ROLES}, got {role!r}')
    row['role'] = role
  return row
