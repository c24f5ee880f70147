"""The keyed prediction record: one per accepted input, key first.

  {"key", "model_version", "predictions": {output name: value},
   "predicted_at": ISO-8601 UTC, <passthrough fields>...}

Its fields follow the model's signature: an output of shape [N, 1] is a
scalar per record, a longer one a list (`value_depth`). Passthrough fields
are copied from the input as they are in JSON; typed formats and tables,
which need a type before any record is read, hold them as text
(`stringify_passthrough`).
"""
import json

from common.json_safe import json_safe
from common.schema import Field
from common.schema import Shape
from common.schema import kind_of_dtype

PARTITION = 'predicted_at'


def value_depth(spec):
  """List depth of one record's value of an output after [N, 1] -> scalar
  squeezing (spec: models.runtime.signatures.TensorSpec)."""
  shape = spec.shape
  if len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1):
    return 0
  return len(shape) - 1


def shape(output_specs, passthrough_fields=()):
  """The prediction record of a signature's outputs {name: TensorSpec}."""
  outputs = tuple(Field(name, kind_of_dtype(spec.dtype),
                        depth=value_depth(spec))
                  for name, spec in output_specs.items())
  return Shape('prediction', (
      Field('key', 'string', required=True),
      Field('model_version', 'string', required=True),
      Field('predictions', 'record', required=True, fields=outputs),
      Field(PARTITION, 'timestamp', required=True),
  ) + tuple(Field(f, 'json', description='JSON text unless a string')
            for f in passthrough_fields), partition=PARTITION)


def record(key, model_version, predictions, predicted_at, example=None,
           passthrough_fields=()):
  """One prediction record; passthrough fields are read from `example`,
  the input record."""
  out = {'key': key, 'model_version': model_version,
         'predictions': predictions, 'predicted_at': predicted_at}
  for field in passthrough_fields:
    out[field] = json_safe(example.get(field))
  return out


def stringify_passthrough(record_, passthrough_fields):
  """The record with non-string passthrough values as JSON text, as typed
  formats (Avro, Parquet) and tables store them."""
  if not passthrough_fields:
    return record_
  out = dict(record_)
  for field in passthrough_fields:
    value = out.get(field)
    if value is not None and not isinstance(value, str):
      out[field] = json.dumps(value, sort_keys=True)
  return out
