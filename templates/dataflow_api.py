"""The Dataflow v1b3 API schema, for checking what we send Dataflow offline.

Google publishes the API's discovery document, and google-api-python-client
ships a copy in its static discovery cache, so metadata.json files and launch
request bodies can be validated without network access. Discovery schemas are
not JSON Schema: objects are `{"type": "object", "properties": ...}` with
`$ref`s to other schemas by id, maps use `additionalProperties`, and required
fields are only marked by descriptions starting with "Required.". The
validator below is strict where the API is lenient: an unknown field is an
error, because a typo such as "helptext" is silently ignored by the service.
"""
import functools
import json
from importlib import resources

DISCOVERY_PACKAGE = 'googleapiclient.discovery_cache.documents'
DISCOVERY_FILE = 'dataflow.v1b3.json'
LAUNCH_URL = ('https://dataflow.googleapis.com/v1b3/projects/{project}/'
              'locations/{region}/flexTemplates:launch')

_JSON_TYPES = {
    'string': str, 'boolean': bool, 'object': dict, 'array': list,
}


@functools.lru_cache(maxsize=1)
def discovery():
  """The Dataflow v1b3 discovery document (google-api-python-client's copy)."""
  text = resources.files(DISCOVERY_PACKAGE).joinpath(DISCOVERY_FILE).read_text()
  return json.loads(text)


def schema(name):
  return discovery()['schemas'][name]


def _required(prop):
  return prop.get('description', '').startswith('Required.')


def errors(value, schema_name):
  """Every way `value` breaks the named discovery schema ([] when valid)."""
  return _check(value, {'$ref': schema_name}, schema_name)


def _check(value, spec, path):
  if '$ref' in spec:
    return _check_object(value, schema(spec['$ref']), path)
  kind = spec.get('type')
  if kind == 'integer':
    # int32 travels as a JSON number, int64 as a decimal string.
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (
        spec.get('format') == 'int64' and isinstance(value, str)
        and value.lstrip('-').isdigit())
    return [] if ok else [f'{path}: expected an integer, got {value!r}']
  if kind == 'number':
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return [] if ok else [f'{path}: expected a number, got {value!r}']
  if kind in _JSON_TYPES and not isinstance(value, _JSON_TYPES[kind]):
    return [f'{path}: expected {kind}, got {type(value).__name__}']
  if 'enum' in spec and value not in spec['enum']:
    return [f'{path}: {value!r} is not one of {spec["enum"]}']
  if kind == 'array':
    return [e for i, item in enumerate(value)
            for e in _check(item, spec.get('items', {}), f'{path}[{i}]')]
  if kind == 'object':
    if 'properties' in spec:
      return _check_object(value, spec, path)
    inner = spec.get('additionalProperties')
    if inner is None:
      return []
    return [e for k, v in value.items()
            for e in _check(v, inner, f'{path}.{k}')]
  return []


def _check_object(value, object_schema, path):
  if not isinstance(value, dict):
    return [f'{path}: expected an object, got {type(value).__name__}']
  props = object_schema['properties']
  found = [f'{path}.{k}: unknown field (known: {sorted(props)})'
           for k in value if k not in props]
  found += [f'{path}.{k}: required field missing'
            for k, p in props.items() if _required(p) and k not in value]
  for k, v in value.items():
    if k in props:
      found += _check(v, props[k], f'{path}.{k}')
  return found
