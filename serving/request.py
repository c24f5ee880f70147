"""Reads and checks a predict request before it gets near the model.

Everything a client can get wrong is caught here with a message naming the
problem: a body over the size limit (413, checked while reading, so a huge
body is never held in memory), malformed JSON, a body that is not an object,
missing/empty/too many instances, a bad signature name, bad keys, and
values of the wrong shape for their input (which TensorFlow would otherwise
only reject inside the graph, looking like a model failure). Input names and
types are left to `Predictor.predict`, which raises `InputError` with the
instance index.
"""
import dataclasses
import json

from models.runtime import signatures as sigs
from serving.errors import ApiError
from serving.errors import bad_request

KEY = 'key'


@dataclasses.dataclass(frozen=True)
class PredictRequest:
  signature_name: str
  instances: list       # as the client sent them (logged verbatim)
  model_instances: list  # what the signature gets: client keys stripped
  keys: list            # one per instance: the client key or None


async def read_body(request, max_bytes):
  """The raw body, refusing (413) anything over `max_bytes` as early as
  possible: from Content-Length when given, else while streaming."""
  length = request.headers.get('content-length')
  if length is not None and length.isdigit() and int(length) > max_bytes:
    raise ApiError(
        413, f'request body of {int(length)} bytes exceeds the limit of '
             f'{max_bytes} bytes')
  chunks, size = [], 0
  async for chunk in request.stream():
    size += len(chunk)
    if size > max_bytes:
      raise ApiError(
          413, f'request body exceeds the limit of {max_bytes} bytes')
    chunks.append(chunk)
  return b''.join(chunks)


def decode_json(body):
  if not body.strip():
    raise bad_request(
        'empty request body; send {"instances": [...]} as JSON')
  try:
    return json.loads(body)
  except RecursionError:
    raise bad_request('malformed JSON: nested too deeply') from None
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
    raise bad_request(f'malformed JSON: {e}') from None


def _valid_key(key):
  return isinstance(key, str) or (
      isinstance(key, int) and not isinstance(key, bool))


def split_keys(instances, signature):
  """Separates client keys from what the model sees.

  An instance object may carry `key`. A signature that takes a `key` input
  (keyed_prediction) gets it as an input; any other signature gets the
  instance without it. Either way the key is returned per instance so it
  can be put back on that instance's prediction.
  """
  takes_key = KEY in signature.inputs
  model_instances, keys = [], []
  for i, instance in enumerate(instances):
    key = None
    if isinstance(instance, dict) and KEY in instance:
      key = instance[KEY]
      if not _valid_key(key):
        raise bad_request(
            f'instance {i}: "key" must be a string or an integer, got '
            f'{type(key).__name__}')
      if not takes_key:
        instance = {k: v for k, v in instance.items() if k != KEY}
    model_instances.append(instance)
    keys.append(key)
  return model_instances, keys


def _value_shape(value):
  """The nested-list shape of a JSON value: () for a scalar, (3,) for a list
  of three; ragged lists are left to tensor conversion to report."""
  dims = []
  while isinstance(value, list):
    dims.append(len(value))
    if not value:
      break
    value = value[0]
  return tuple(dims)


def _describe(shape):
  if not shape:
    return 'a scalar'
  return 'shape [' + ', '.join('None' if d == -1 else str(d)
                               for d in shape) + ']'


def check_shapes(instances, signature):
  """Each instance's value must have its input's shape minus the batch
  dimension: a string[None] input takes one string per instance, not a list."""
  names = list(signature.inputs)
  for i, instance in enumerate(instances):
    if not isinstance(instance, dict):
      instance = {names[0]: instance} if len(names) == 1 else {}
    for name, value in instance.items():
      spec = signature.inputs.get(name)
      if spec is None or not spec.shape:  # unknown name or rank: not here
        continue
      expected, got = spec.shape[1:], _value_shape(value)
      if len(got) != len(expected) or any(
          e not in (-1, g) for e, g in zip(expected, got)):
        raise bad_request(
            f'instance {i}: input {name!r} takes {_describe(expected)} per '
            f'instance, got {_describe(got)}')


def parse_predict(body, predictor, max_instances):
  """Checks a decoded request body; returns a PredictRequest."""
  if not isinstance(body, dict):
    raise bad_request(
        f'request body must be a JSON object with "instances", got '
        f'{type(body).__name__}')
  if 'instances' not in body:
    hint = (' (the columnar "inputs" format is not supported)'
            if 'inputs' in body else '')
    raise bad_request(f'missing "instances"{hint}')
  instances = body['instances']
  if not isinstance(instances, list):
    raise bad_request(
        f'"instances" must be a list, got {type(instances).__name__}')
  if not instances:
    raise bad_request('"instances" is empty')
  if len(instances) > max_instances:
    raise bad_request(
        f'{len(instances)} instances exceed the limit of {max_instances} '
        f'per request')
  # Absent or "" means the default signature, as in TF Serving.
  signature_name = body.get('signature_name')
  if signature_name is None or signature_name == '':
    signature_name = sigs.DEFAULT_SIGNATURE
  if not isinstance(signature_name, str):
    raise bad_request(
        f'"signature_name" must be a string, got '
        f'{type(signature_name).__name__}')
  try:
    signature = predictor.signature(signature_name)
  except sigs.SignatureNotFound as e:
    raise bad_request(str(e)) from None
  model_instances, keys = split_keys(instances, signature)
  check_shapes(model_instances, signature)
  return PredictRequest(signature_name, instances, model_instances, keys)


def with_keys(predictions, keys):
  """Puts each client key back, first, on its instance's prediction."""
  return [
      prediction if key is None else
      {KEY: key, **{k: v for k, v in prediction.items() if k != KEY}}
      for prediction, key in zip(predictions, keys)]
