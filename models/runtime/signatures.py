"""Reads a SavedModel's serving signatures without loading the model.

Pipelines validate `--signature` and `--feature_map` while they are being
constructed, before any worker starts; reading the signature definitions from
`saved_model.pb` (as `saved_model_cli` does) takes milliseconds and does not
restore variables, so a wrong flag fails fast with a clear message.
"""
import dataclasses
import os

DEFAULT_SIGNATURE = 'serving_default'
_HUB_PREFIXES = ('http://', 'https://')


class SignatureNotFound(ValueError):
  """The model has no signature of the requested name."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  dtype: str          # numpy-style name: 'string', 'float32', 'int64', ...
  shape: tuple        # -1 for unknown dimensions; () for unknown rank

  @property
  def is_string(self):
    return self.dtype == 'string'

  def describe(self):
    dims = ', '.join('None' if d == -1 else str(d) for d in self.shape)
    return f'{self.dtype}[{dims}]'


@dataclasses.dataclass(frozen=True)
class Signature:
  name: str
  inputs: dict        # input name -> TensorSpec
  outputs: dict       # output name -> TensorSpec


def resolve_model_dir(model_dir):
  """Returns a local or gs:// directory for a model path or TF-Hub handle.

  gs:// paths are read in place through tf.io.gfile, and a local directory
  is used as it is. Everything else goes through `tensorflow_hub.resolve`,
  which downloads and caches hub handles (tfhub.dev / Kaggle URLs); only
  then is tensorflow_hub imported, which imports Keras too: a start-up cost
  every job on a local model would pay for nothing.
  """
  if model_dir.startswith('gs://') or os.path.isdir(model_dir):
    return model_dir
  import tensorflow_hub as hub
  return hub.resolve(model_dir)


def is_hub_handle(model_dir):
  return model_dir.startswith(_HUB_PREFIXES)


def _tensor_spec(tensor_info):
  from tensorflow.python.framework import dtypes
  dtype = dtypes.as_dtype(tensor_info.dtype).name
  shape = tensor_info.tensor_shape
  dims = () if shape.unknown_rank else tuple(d.size for d in shape.dim)
  return TensorSpec(dtype=dtype, shape=dims)


def read_signatures(model_dir, tag='serve'):
  """Returns {name: Signature} for the serving signatures of a SavedModel."""
  from tensorflow.python.tools import saved_model_utils
  meta_graph = saved_model_utils.get_meta_graph_def(
      resolve_model_dir(model_dir), tag)
  signatures = {}
  for name, sig in meta_graph.signature_def.items():
    if name.startswith('__'):  # e.g. __saved_model_init_op, not servable
      continue
    signatures[name] = Signature(
        name=name,
        inputs={k: _tensor_spec(v) for k, v in sorted(sig.inputs.items())},
        outputs={k: _tensor_spec(v) for k, v in sorted(sig.outputs.items())})
  return signatures


def get_signature(model_dir, name=DEFAULT_SIGNATURE):
  """Returns one Signature, or raises SignatureNotFound naming the others."""
  signatures = read_signatures(model_dir)
  if name not in signatures:
    raise SignatureNotFound(
        f'model {model_dir!r} has no signature {name!r}; it has: '
        f'{", ".join(sorted(signatures)) or "none"}')
  return signatures[name]


def default_model_version(model_dir):
  """A readable version id derived from the model path.

  TF Serving lays models out as `<name>/<version number>/`, so a numeric last
  component is kept with its parent ('sentiment/1'); otherwise the last
  component alone is used.
  """
  parts = [p for p in model_dir.rstrip('/').split('/') if p]
  if len(parts) >= 2 and parts[-1].isdigit():
    return f'{parts[-2]}/{parts[-1]}'
  return parts[-1] if parts else model_dir


def default_model_name(model_dir):
  """The model's name: the version's parent folder ('sentiment' for
  'models/sentiment/1'), else the last path component."""
  return default_model_version(model_dir).split('/')[0]


def format_signatures(signatures):
  """Human-readable listing of signatures, inputs and outputs."""
  lines = []
  for name in sorted(signatures):
    sig = signatures[name]
    lines.append(f'signature {name!r}')
    for title, specs in (('inputs', sig.inputs), ('outputs', sig.outputs)):
      lines.append(f'  {title}:')
      for tensor, spec in specs.items():
        lines.append(f'    {tensor:<32} {spec.describe()}')
  return '\n'.join(lines)
