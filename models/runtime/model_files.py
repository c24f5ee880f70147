"""Checks a SavedModel's files, so that a corrupt or changing model is
refused with one clear message and never half-loaded.

Three ways a model folder goes wrong under a running system:
- truncated or damaged variables (a copy cut short, a full disk): TensorFlow
  notices only when it restores them, as "Read less bytes than requested";
- a folder being replaced while it is read (a copy in progress, files of
  two versions side by side): the graph of one version could be restored
  with the variables of another, with no error at all;
- a folder replaced between the job's start and a worker's load: workers
  would serve another model than the one the job was checked against.

The SavedModel's fingerprint (fingerprint.pb, written at export: hashes of
saved_model.pb and of the variables' index) is what ties the files
together. `verify` recomputes it from the files and compares, then reads
every variable once (each tensor's checksum is checked), so a bad model is
found when a job or server starts. `fingerprint` is cheap (it hashes the
graph and the index, not the variables): a loader compares it before and
after loading, and with the one the job started with.
"""


class ModelFilesError(ValueError):
  """The model's files are damaged, incomplete, or not the ones expected."""


def _hashes(fingerprint_def):
  return (f'{fingerprint_def.saved_model_checksum:x}-'
          f'{fingerprint_def.checkpoint_hash:x}')


def fingerprint(model_dir):
  """The fingerprint of the files at `model_dir` now, as a short string
  (saved_model.pb checksum - variables index hash)."""
  import tensorflow as tf
  from tensorflow.core.protobuf import fingerprint_pb2
  from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
  if not any(tf.io.gfile.exists(tf.io.gfile.join(model_dir, name))
             for name in ('saved_model.pb', 'saved_model.pbtxt')):
    raise ModelFilesError(f'{model_dir}: no saved_model.pb')
  try:
    serialized = fingerprinting.CreateFingerprintDef(model_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelFilesError(
        f'{model_dir}: not a readable SavedModel: {_first_line(e)}') from None
  return _hashes(fingerprint_pb2.FingerprintDef.FromString(serialized))


def _exported_fingerprint(model_dir):
  """The fingerprint written at export, or None (models saved before
  TensorFlow 2.12 have none)."""
  import tensorflow as tf
  try:
    stored = tf.saved_model.experimental.read_fingerprint(model_dir)
  except Exception:  # pylint: disable=broad-except
    return None
  return _hashes(stored)


def _check_variables(model_dir):
  import tensorflow as tf
  prefix = tf.io.gfile.join(model_dir, 'variables', 'variables')
  if not tf.io.gfile.exists(prefix + '.index'):
    return  # a model without variables
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in sorted(reader.get_variable_to_shape_map()):
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelFilesError(
        f'{model_dir}: the variables are truncated or damaged '
        f'({_first_line(e)}); copy the model again') from None


def consistent_fingerprint(model_dir):
  """The fingerprint of the files at `model_dir`, once checked against the
  one written at export; ModelFilesError when they differ."""
  now = fingerprint(model_dir)
  exported = _exported_fingerprint(model_dir)
  if exported is not None and exported != now:
    raise ModelFilesError(
        f'{model_dir}: the files do not match the fingerprint written when '
        f'the model was exported ({exported}, files now {now}): a copy in '
        'progress, or files of two versions')
  return now


def verify(model_dir, expected=None):
  """Checks the model at `model_dir` as a job or server starts; returns
  its fingerprint.

  Raises ModelFilesError when the files do not match the fingerprint they
  were exported with, a variable cannot be read back whole, or (with
  `expected`) the fingerprint is not the expected one.
  """
  now = consistent_fingerprint(model_dir)
  check_unchanged(model_dir, expected, now)
  _check_variables(model_dir)
  return now


def check_unchanged(model_dir, expected, now):
  """Raises ModelFilesError when fingerprint `now` is not `expected`
  (None expects nothing)."""
  if expected is not None and now != expected:
    raise ModelFilesError(
        f'{model_dir}: the model changed since the job started (fingerprint '
        f'{expected} then, {now} now); point --model_dir at a version '
        'folder that is never replaced in place')


def _first_line(e):
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0] if text else ""}'
