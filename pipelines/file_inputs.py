"""The file-input flags and checks that several jobs share.

batch_predict and two_phase read the same sharded, keyed file inputs; their
`--input_format`, key and duplicate flags, and the checks that turn a bad
pattern into one clear line, are declared here once so the two jobs (and
their Flex Template metadata) cannot drift apart.
"""
from apache_beam.io.filesystems import FileSystems

from pipelines import launch
from transforms.keyed import keys
from transforms.io import sources
from transforms.keyed.features import DEFAULT_MAX_TEXT_BYTES


def split_list(text):
  """'a, b,,c' -> ['a', 'b', 'c']."""
  return [part.strip() for part in (text or '').split(',') if part.strip()]


def add_arguments(parser):
  """Declares --input_format, --key_field, --attach_keys,
  --allow_duplicate_keys and --max_text_bytes (each job declares its own
  --input)."""
  parser.add_argument(
      '--input_format', choices=sources.FORMATS,
      help='Input format; inferred from the file extension when omitted.')
  parser.add_argument(
      '--key_field', default='key',
      help='Record field that holds the client key (default: key).')
  parser.add_argument(
      '--attach_keys', choices=keys.KEY_MODES, default=keys.FROM_FIELD,
      help='"field" reads --key_field; "content_hash" derives a deterministic '
      'key from the record content, for inputs without client keys.')
  parser.add_argument(
      '--allow_duplicate_keys', **launch.SWITCH,
      help='Skip the duplicate-key check (saves a pass over the keys and a '
      'shuffle when keys are known to be unique). By default one record per '
      'key is kept, the same on every run, and every other occurrence goes '
      'to the dead letter.')
  parser.add_argument(
      '--max_text_bytes', type=int, default=DEFAULT_MAX_TEXT_BYTES,
      help='Texts longer than this (UTF-8 bytes) go to the dead letter '
      f'(default: {DEFAULT_MAX_TEXT_BYTES}).')


def patterns_of(args):
  """The --input patterns (repeated flags and comma-separated lists)."""
  return [p for value in args.input or () for p in split_list(value)]


def check_patterns(patterns, flag='--input'):
  """Every pattern must match at least one file (local or gs://): a missing
  input is one line naming `flag`, not a traceback from inside the read."""
  for pattern in patterns:
    try:
      matched = FileSystems.match([pattern])[0].metadata_list
    except Exception as e:  # pylint: disable=broad-except
      raise launch.UsageError(flag, f'cannot list {pattern!r}: {e}')
    if not matched:
      raise launch.UsageError(flag, f'no files match {pattern!r}')


def resolve_format(args, patterns):
  """--input_format, or the one format the patterns' extensions imply."""
  input_format = args.input_format
  if input_format is None:
    inferred = {sources.infer_format(p) for p in patterns}
    if len(inferred) != 1 or None in inferred:
      raise launch.UsageError(
          '--input_format',
          f'cannot infer one format from {patterns}; pass --input_format')
    input_format = inferred.pop()
  if input_format == 'text' and args.attach_keys != keys.CONTENT_HASH:
    raise launch.UsageError(
        '--attach_keys', 'text inputs carry no key field; use '
        '--attach_keys content_hash')
  return input_format
