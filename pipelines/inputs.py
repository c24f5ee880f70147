"""The input flags of the model jobs, and the KeyedInputConfig built from them.

batch_predict and two_phase read the same sharded, keyed inputs: their
`--input_format`, key and duplicate flags, and the checks that turn a bad
pattern into one clear line, are declared here once so the two jobs (and
their Flex Template metadata) cannot drift apart.
"""
from apache_beam.io.filesystems import FileSystems

from pipelines import launch
from pipelines.flags import Flag
from pipelines.flags import split_list
from transforms.io import file_schema
from transforms.io import sources
from transforms.keyed import keys
from transforms.keyed.features import DEFAULT_MAX_TEXT_BYTES
from transforms.keyed.keyed_input import KeyedInputConfig

# The labels of the evaluation job and of stream_predict's accuracy gate, read
# by one rule (transforms.evaluation.rows.LabelRule).
LABELS = (
    Flag('label_field', default='groundtruth',
         help='The field of a label row (or message) holding the label.'),
    Flag('positive_label', default='positive',
         help='Binary models: the class a high probability (a true '
         'decision) predicts.'),
    Flag('negative_label', default='negative',
         help='Binary models: the class a low probability predicts.'),
    Flag('label_set',
         help='The classes, comma-separated, for a multi-class model (e.g. '
         'github,nytimes,techcrunch), in the order of a list output. '
         'Default: --positive_label and --negative_label. A label is matched '
         'exactly, else ignoring case and surrounding spaces; true/false are '
         'the positive/negative label; any other label is unknown. (Not '
         '--labels: that is Beam\'s flag for Dataflow job labels.)'),
)

KEYED_INPUT = (
    Flag('input_format', choices=sources.FORMATS,
         help='Input format; inferred from the file extension when omitted.'),
    Flag('key_field', default='key',
         help='Record field that holds the client key (default: key); a '
         'dotted path (meta.id) reads a nested field.'),
    Flag('attach_keys', choices=keys.KEY_MODES, default=keys.FROM_FIELD,
         help='"field" reads --key_field; "content_hash" derives a '
         'deterministic key from the record content, for inputs without '
         'client keys.'),
    Flag('allow_duplicate_keys', switch=True,
         help='Skip the duplicate-key check (saves a pass over the keys and a '
         'shuffle when keys are known to be unique). By default one record '
         'per key is kept, the same on every run, and every other occurrence '
         'goes to the dead letter.'),
    Flag('max_text_bytes', type=int, default=DEFAULT_MAX_TEXT_BYTES,
         help='Texts longer than this (UTF-8 bytes) go to the dead letter '
         f'(default: {DEFAULT_MAX_TEXT_BYTES}).'),
)


TIMESTAMP_FIELD = Flag(
    'timestamp_field',
    help='Record field holding the event time (ISO-8601 with an offset, or '
    'epoch seconds); recorded as the prediction-log time and, in streaming, '
    'the element timestamp. Default: the time the record is read (streaming: '
    'the Pub/Sub publish time).')


def patterns_of(values):
  """File patterns from a repeated flag whose values may be comma-separated
  lists: what every job checks is what it reads."""
  if isinstance(values, str):
    values = [values]
  return tuple(p for value in values or () for p in split_list(value))


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


def check_fields(patterns, input_format, key_rule, fields):
  """Refuses, with one line, an input whose header or schema (CSV, Avro,
  Parquet: transforms.io.file_schema) lacks the key field or a feature
  field, which would dead-letter every record; and a CSV read of a file
  that is JSON lines. `fields`: {record field: (the flag that names it,
  what needs it)}. The first file of each pattern is read."""
  for pattern in patterns:
    path = FileSystems.match([pattern])[0].metadata_list[0].path
    try:
      present = file_schema.fields_of(path, input_format)
    except file_schema.NotThisFormat as e:
      raise launch.UsageError(
          '--input_format', f'{input_format}, but {e}; pass the format the '
          'files hold') from None
    except Exception:  # pylint: disable=broad-except
      continue  # unreadable: the job dead-letters the file (sources)
    if present is None:
      return
    where = f"{path}'s {'header' if input_format == 'csv' else 'schema'}"
    if key_rule.mode == keys.FROM_FIELD and key_rule.field not in present:
      raise launch.UsageError('--key_field', (
          f'{key_rule.field!r} is not a column of {where} '
          f'{sorted(present)}'))
    for field, (flag, needed_by) in fields.items():
      if field not in present:
        raise launch.UsageError(flag, (
            f'field {field!r} ({needed_by}) is not in {where} '
            f'{sorted(present)}'))


def resolve_format(input_format, patterns):
  """--input_format, or the one format the patterns' extensions imply."""
  if input_format is not None:
    return input_format
  inferred = {sources.infer_format(p) for p in patterns}
  if len(inferred) != 1 or None in inferred:
    raise launch.UsageError(
        '--input_format',
        f'cannot infer one format from {list(patterns)}; pass --input_format')
  return inferred.pop()


def keyed_input_config(args, chunk_size, local, patterns=(), input_format=None,
                       table=None, query=None, chunk_flag='batch_size'):
  """The KeyedInputConfig of the KEYED_INPUT flags (and the job's own
  source flags, already resolved; `chunk_flag` names the flag of the chunk
  size); a setting the config refuses is one usage line."""
  with launch.flag_names(chunk_size=chunk_flag):
    return KeyedInputConfig(
        key_rule=keys.KeyRule(args.key_field, args.attach_keys),
        patterns=tuple(patterns), input_format=input_format, table=table,
        query=query,
        check_duplicates=not args.allow_duplicate_keys,
        max_text_bytes=args.max_text_bytes, chunk_size=chunk_size,
        local=local)
