"""Adds a keyed signature to an existing SavedModel that has none.

For models exported elsewhere: the keyed-predictions pattern needs a signature
that passes a client key through the model unchanged, so predictions can be
matched to inputs whatever order they come back in. This loads the model,
wraps its default signature in a function that also takes `key` and returns
it untouched, and saves a new SavedModel with both signatures; the original
default behaviour stays available as `serving_default`.

    python -m models.add_keyed_signature SRC_DIR DST_DIR [--key_dtype string]
"""
import argparse
import sys

from models.runtime import signatures as sigs
KEYED_SIGNATURE = 'keyed_prediction'


def add_keyed_signature(src_dir, dst_dir, key_dtype='string',
                        source_signature=sigs.DEFAULT_SIGNATURE,
                        keyed_signature=KEYED_SIGNATURE):
  """Writes `src_dir` plus a keyed signature to `dst_dir`; returns its specs."""
  import tensorflow as tf
  source = sigs.get_signature(src_dir, source_signature)
  if 'key' in source.inputs:
    raise ValueError(
        f'signature {source_signature!r} already takes an input named "key"')
  model = tf.saved_model.load(sigs.resolve_model_dir(src_dir))
  default_fn = model.signatures[source_signature]
  input_specs = default_fn.structured_input_signature[1]

  key_spec = tf.TensorSpec([None], tf.dtypes.as_dtype(key_dtype), name='key')

  @tf.function(input_signature=[key_spec] + [
      tf.TensorSpec(spec.shape, spec.dtype, name=name)
      for name, spec in sorted(input_specs.items())])
  def keyed(key, *inputs):
    outputs = dict(default_fn(**dict(zip(sorted(input_specs), inputs))))
    outputs['key'] = tf.identity(key)
    return outputs

  tf.saved_model.save(model, dst_dir, signatures={
      source_signature: default_fn, keyed_signature: keyed})
  return sigs.read_signatures(dst_dir)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('src_dir', help='SavedModel to read (not modified).')
  parser.add_argument('dst_dir', help='Where to write the keyed SavedModel.')
  parser.add_argument('--key_dtype', default='string',
                      choices=['string', 'int64', 'int32'],
                      help='Type of the client key (default string).')
  parser.add_argument('--signature', default=sigs.DEFAULT_SIGNATURE,
                      help='The signature to wrap (default serving_default).')
  args = parser.parse_args(argv)
  try:
    found = add_keyed_signature(args.src_dir, args.dst_dir, args.key_dtype,
                                args.signature)
  except (OSError, ValueError) as e:
    print(f'add_keyed_signature: error: {e}', file=sys.stderr)
    return 2
  print(sigs.format_signatures(found))
  return 0


if __name__ == '__main__':
  sys.exit(main())
