"""Reads and checks a predict request before it gets near the model.

Everything a client can get wrong is caught here with a message naming the
problem: a body that says it is not JSON (415), a body over the size limit
(413, checked while reading, so a huge body is never held in memory),
malformed JSON, a body that is not an object, missing/empty/too many
instances, a bad signature name, bad keys, values of the wrong shape for
their input (which TensorFlow would otherwise only reject inside the graph,
looking like a model failure), and text the batch job would dead-letter
(empty, whitespace-only or over the size limit: the same rule function,
`common.feature_rule.feature_problem`). Input names and types are left
to `Predictor.predict`, which raises `InputError` with the instance index.

Both protocols end in `checked_request`: TF Serving's rows (`parse_predict`)
and the Open Inference Protocol's tensors (`serving.v2_tensors`), once turned
into rows, pass the same checks.
"""
import dataclasses
import json

from common import feature_rule
from models.runtime import signatures as sigs
from serving.errors import ApiError
from serving.errors import bad_request

KEY = 'key'
JSON_TYPE = 'application/json'
# What the batch job's rule says about text, reported online as a 400; its
# other reasons (missing feature, wrong type) are left to the predictor,
# whose messages name the input and the type.
TEXT_REASONS = ('empty_text', 'text_too_long')


@dataclasses.dataclass(frozen=True)
class PredictRequest:
  signature_name: str
  instances: list       # as the client sent them (logged verbatim)
  model_instances: list  # what the signature gets: client keys stripped
  keys: list            # one per instance: the client key or None


def check_content_type(request):
  """415 for a body declared as something other than JSON. A charset (or any
  other parameter) is fine; a request without Content-Type is read as JSON."""
  declared = request.headers.get('content-type')
  if declared is None:
    return
  media_type = declared.split(';', 1)[0].strip().lower()
  if media_type != JSON_TYPE:
    raise ApiError(
        415, f'Content-Type {media_type or declared!r} is not supported; send '
             f'the body as JSON with "Content-Type: {JSON_TYPE}"')


async def read_json(request, max_bytes):
  """The request's body, decoded: content type, size limit, then JSON."""
  check_content_type(request)
  return decode_json(await read_body(request, max_bytes))


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


def _named(instance, names):
  """An instance as {input name: value}: a bare value names the single
  input; a bare value for several inputs is left to the predictor."""
  if isinstance(instance, dict):
    return instance
  return {names[0]: instance} if len(names) == 1 else {}


def check_shapes(instances, signature):
  """Each instance's value must have its input's shape minus the batch
  dimension: a string[None] input takes one string per instance, not a list."""
  names = list(signature.inputs)
  for i, instance in enumerate(instances):
    for name, value in _named(instance, names).items():
      spec = signature.inputs.get(name)
      if spec is None:  # an unknown name: not here
        continue
      problem = feature_rule.shape_problem(value, spec)
      if problem:
        raise bad_request(f'instance {i}: input {name!r} {problem}')


def check_texts(instances, signature, max_text_bytes):
  """Text inputs the batch job would dead-letter (`empty_text`,
  `text_too_long`) are refused here, by the batch job's own rule. A client
  `key` is an identifier, not text: it is not checked."""
  checks = feature_rule.feature_checks(
      {name: spec for name, spec in signature.inputs.items()
       if spec.is_string and name != KEY}, {})
  if not checks:
    return
  names = list(signature.inputs)
  for i, instance in enumerate(instances):
    problem = feature_rule.feature_problem(
        _named(instance, names), checks, max_text_bytes)
    if problem and problem[0] in TEXT_REASONS:
      raise bad_request(f'instance {i}: {problem[1]} ({problem[0]})')


def check_count(count, max_instances):
  if count > max_instances:
    raise bad_request(
        f'{count} instances exceed the limit of {max_instances} per request')


def signature_of(predictor, name):
  """The named signature; absent or "" means the default, as in TF Serving."""
  if name is None or name == '':
    name = sigs.DEFAULT_SIGNATURE
  if not isinstance(name, str):
    raise bad_request(
        f'"signature_name" must be a string, got {type(name).__name__}')
  try:
    return predictor.signature(name)
  except sigs.SignatureNotFound as e:
    raise bad_request(str(e)) from None


def checked_request(signature, instances, max_text_bytes):
  """The checks every protocol's instances pass; returns a PredictRequest."""
  model_instances, keys = split_keys(instances, signature)
  check_shapes(model_instances, signature)
  check_texts(model_instances, signature, max_text_bytes)
  return PredictRequest(signature.name, instances, model_instances, keys)


def parse_predict(body, predictor, max_instances, max_text_bytes):
  """Checks a decoded TF Serving request body; returns a PredictRequest."""
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
  check_count(len(instances), max_instances)
  signature = signature_of(predictor, body.get('signature_name'))
  return checked_request(signature, instances, max_text_bytes)


def with_keys(predictions, keys):
  """Puts each client key back, first, on its instance's prediction."""
  return [
      prediction if key is None else
      {KEY: key, **{k: v for k, v in prediction.items() if k != KEY}}
      for prediction, key in zip(predictions, keys)]
