"""Open Inference Protocol (KServe v2) tensors to and from the server's rows.

A v2 request carries one typed tensor per input, the whole batch in each:
`{"name", "datatype", "shape", "data"}` with `data` in row-major order,
flat or nested. The first dimension is the batch of instances, so instance
i of a [N, d...] tensor is its i-th [d...] slice. The tensors become the same
rows that TF Serving's `instances` are (one {input: value} per instance) and
pass the same checks (`serving.request.checked_request`), so both protocols
reach the model, the micro-batcher and the prediction log identically; the
predictions, rows again, go back as one tensor per output.

Server-specific parts, as the protocol allows:
- `parameters.signature_name` picks the signature (default serving_default).
- A "key" input tensor (BYTES or INT64, shape [N]) that the signature does
  not take is a client key per instance: kept away from the model and
  returned as a "key" output tensor, as `key` is in v1 instances.
"""
import dataclasses
import math
import uuid

from common import feature_rule
from serving import request as req
from serving.errors import bad_request

KEY = req.KEY
# TensorFlow dtype names (models.runtime.signatures) -> v2 datatypes.
DATATYPES = {
    'bool': 'BOOL', 'uint8': 'UINT8', 'uint16': 'UINT16', 'uint32': 'UINT32',
    'uint64': 'UINT64', 'int8': 'INT8', 'int16': 'INT16', 'int32': 'INT32',
    'int64': 'INT64', 'float16': 'FP16', 'float32': 'FP32', 'float64': 'FP64',
    'bfloat16': 'BF16', 'string': 'BYTES',
}
KEY_DATATYPES = {'BYTES': str, 'INT64': int}
_SCALARS = (str, int, float, bool)


def datatype(spec):
  return DATATYPES.get(spec.dtype, spec.dtype.upper())


def tensor_metadata(specs):
  """[{"name", "datatype", "shape"}] for a signature's inputs or outputs;
  -1 is a dimension of any size."""
  return [{'name': name, 'datatype': datatype(spec), 'shape': list(spec.shape)}
          for name, spec in specs.items()]


@dataclasses.dataclass(frozen=True)
class InferRequest:
  id: str
  predict: req.PredictRequest
  outputs: list  # output names to return, in order; empty: all
  signature: object  # models.runtime.signatures.Signature


def parse_infer(body, predictor, max_instances, max_text_bytes):
  """Checks a decoded v2 inference request; returns an InferRequest."""
  if not isinstance(body, dict):
    raise bad_request(f'request body must be a JSON object with "inputs", got '
                      f'{type(body).__name__}')
  request_id = body.get('id')
  if request_id is None:  # the response always carries one, for the logs
    request_id = uuid.uuid4().hex
  if not isinstance(request_id, str):
    raise bad_request(f'"id" must be a string, got {type(request_id).__name__}')
  parameters = body.get('parameters') or {}
  if not isinstance(parameters, dict):
    raise bad_request(f'"parameters" must be an object, got '
                      f'{type(parameters).__name__}')
  signature = req.signature_of(predictor, parameters.get('signature_name'))
  tensors = _input_tensors(body.get('inputs'), signature)
  count = _batch_size(tensors)
  req.check_count(count, max_instances)
  outputs = _requested_outputs(body.get('outputs'), signature,
                               keyed=KEY in tensors)
  instances = [{name: _instance(shape, data, i)
                for name, (shape, data) in tensors.items()}
               for i in range(count)]
  return InferRequest(
      request_id, req.checked_request(signature, instances, max_text_bytes),
      outputs, signature)


def _input_tensors(inputs, signature):
  """{name: (shape, flat data)}, each checked against its input's spec."""
  if not isinstance(inputs, list) or not inputs:
    raise bad_request('"inputs" must be a non-empty list of tensors '
                      '({"name", "datatype", "shape", "data"})')
  tensors = {}
  for i, tensor in enumerate(inputs):
    name, shape, data = _tensor_fields(tensor, i)
    if name in tensors:
      raise bad_request(f'input {name!r} is given twice')
    if name == KEY and KEY not in signature.inputs:
      _check_client_keys(tensor['datatype'], shape, data)
    elif name in signature.inputs:
      _check_spec(name, tensor['datatype'], shape, signature.inputs[name])
    else:
      raise bad_request(
          f'signature {signature.name!r} has no input {name!r}; it takes '
          f'{list(signature.inputs)}')
    tensors[name] = shape, data
  missing = [name for name in signature.inputs if name not in tensors]
  if missing:
    raise bad_request(f'signature {signature.name!r} takes inputs '
                      f'{list(signature.inputs)}; missing {missing}')
  return tensors


def _tensor_fields(tensor, index):
  """(name, shape, flat data) of one request tensor, structurally checked."""
  if not isinstance(tensor, dict):
    raise bad_request(f'inputs[{index}] must be an object, got '
                      f'{type(tensor).__name__}')
  for field in ('name', 'datatype', 'shape', 'data'):
    if field not in tensor:
      raise bad_request(f'inputs[{index}] has no "{field}"')
  name, shape = tensor['name'], tensor['shape']
  if not isinstance(name, str) or not isinstance(tensor['datatype'], str):
    raise bad_request(f'inputs[{index}]: "name" and "datatype" must be strings')
  if not isinstance(shape, list) or not shape or not all(
      isinstance(d, int) and not isinstance(d, bool) and d >= 0
      for d in shape):
    raise bad_request(
        f'input {name!r}: "shape" must be a list of sizes >= 0, the first '
        f'the number of instances; got {shape!r}')
  if 'binary_data_size' in (tensor.get('parameters') or {}):
    raise bad_request(f'input {name!r}: binary tensor data is not supported; '
                      'send "data" as JSON')
  data = _flatten(tensor['data'], name)
  if len(data) != math.prod(shape):
    raise bad_request(f'input {name!r}: shape {shape} holds '
                      f'{math.prod(shape)} elements, "data" has {len(data)}')
  return name, shape, data


def _flatten(data, name):
  """Row-major elements of `data`, given flat or nested."""
  if not isinstance(data, list):
    data = [data]
  flat, stack = [], [iter(data)]
  while stack:
    for value in stack[-1]:
      if isinstance(value, list):
        stack.append(iter(value))
        break
      if not isinstance(value, _SCALARS):
        raise bad_request(f'input {name!r}: "data" holds numbers, strings or '
                          f'booleans, not {type(value).__name__}')
      flat.append(value)
    else:
      stack.pop()
  return flat


def _check_spec(name, given, shape, spec):
  expected = datatype(spec)
  if given != expected:
    raise bad_request(f'input {name!r} has datatype {given}; the model takes '
                      f'{expected}')
  if spec.shape and (len(shape) != len(spec.shape) or any(
      want not in (-1, got) for want, got in zip(spec.shape, shape))):
    raise bad_request(f'input {name!r} has shape {shape}; the model takes '
                      f'{list(spec.shape)} (-1: any size)')


def _check_client_keys(given, shape, data):
  if given not in KEY_DATATYPES or len(shape) != 1:
    raise bad_request(
        f'input {KEY!r} (client keys) must be BYTES or INT64 of shape [N]; got '
        f'{given} {shape}')
  kind = KEY_DATATYPES[given]
  for i, key in enumerate(data):
    if not isinstance(key, kind) or isinstance(key, bool):
      raise bad_request(f'instance {i}: "key" is {given}, got '
                        f'{type(key).__name__}')


def _batch_size(tensors):
  sizes = {name: shape[0] for name, (shape, _) in tensors.items()}
  if len(set(sizes.values())) > 1:
    raise bad_request(f'inputs disagree on the number of instances (the first '
                      f'dimension): {sizes}')
  count = next(iter(sizes.values()))
  if not count:
    raise bad_request('the inputs hold no instances (first dimension 0)')
  return count


def _instance(shape, data, i):
  """Instance i of a tensor: its i-th slice along the first dimension."""
  dims = shape[1:]
  size = math.prod(dims)
  return _nest(data[i * size:(i + 1) * size], dims)


def _nest(flat, dims):
  if not dims:
    return flat[0]
  step = math.prod(dims[1:])
  return [_nest(flat[j * step:(j + 1) * step], dims[1:])
          for j in range(dims[0])]


def _requested_outputs(outputs, signature, keyed):
  """The names of the requested outputs, checked; [] for all."""
  if outputs is None:
    return []
  if not isinstance(outputs, list) or not all(
      isinstance(o, dict) and isinstance(o.get('name'), str) for o in outputs):
    raise bad_request('"outputs" must be a list of {"name": ...} objects')
  available = list(signature.outputs)
  if keyed and KEY not in available:
    available.insert(0, KEY)
  names = list(dict.fromkeys(o['name'] for o in outputs))
  unknown = [name for name in names if name not in available]
  if unknown:
    raise bad_request(f'unknown outputs {unknown}; signature '
                      f'{signature.name!r} has {available}')
  return names


def infer_response(infer, predictions, model_name, version):
  """The v2 response: one tensor per (requested) output, the batch first.
  By default: the key (when there is one), then the signature's outputs in
  its order (TensorFlow's own output order varies from load to load)."""
  names = infer.outputs or [
      *([KEY] if KEY in predictions[0] else []),
      *(name for name in infer.signature.outputs if name != KEY)]
  return {
      'model_name': model_name,
      'model_version': version,
      'id': infer.id,
      'parameters': {'signature_name': infer.signature.name},
      'outputs': [_output_tensor(name, [p[name] for p in predictions],
                                 infer.signature.outputs.get(name))
                  for name in names],
  }


def _output_tensor(name, values, spec):
  """`values` (one per instance) as a tensor. The predictor hands [N, 1]
  outputs over as one scalar per instance; their shape is restored."""
  dims = feature_rule.value_shape(values[0])
  if not dims and spec is not None and len(spec.shape) == 2:
    dims = (1,)
  if spec is not None:
    kind = datatype(spec)
  else:  # client keys the model never saw
    kind = 'BYTES' if isinstance(values[0], str) else 'INT64'
  return {'name': name, 'datatype': kind, 'shape': [len(values), *dims],
          'data': _flatten(values, name)}
