"""Prints a SavedModel's serving signatures: inputs, outputs, dtypes, shapes.

    python -m models.show_signatures MODEL_DIR

A readable alternative to `saved_model_cli show --all` that lists only what a
client needs to call the model.
"""
import argparse
import sys

from models.runtime import signatures
def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('model_dir', help='SavedModel directory, gs:// path or TF-Hub handle.')
  args = parser.parse_args(argv)
  try:
    found = signatures.read_signatures(args.model_dir)
  except (OSError, IOError) as e:
    print(f'show_signatures: error: {args.model_dir}: {e}', file=sys.stderr)
    return 2
  print(signatures.format_signatures(found))
  return 0


if __name__ == '__main__':
  sys.exit(main())
