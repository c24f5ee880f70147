"""Output flags several jobs share: dead letters, BigQuery writes, shards.

Every job sends its dead letters to files (JSONL under a prefix) or a
BigQuery table, and writes tables through Beam's WriteToBigQuery with the
same method and retry flags; declared here once, with the checks and the
sink they choose.
"""
import os

from pipelines import launch
from pipelines.flags import Flag
from transforms.io import bigquery
from transforms.io import sinks

DEAD_LETTER_FILES = Flag(
    'dead_letter',
    help='Output prefix for rejected records, as JSONL (default: '
    '<output>_errors; not <output>-errors, which the output sink\'s shard '
    'glob <output>-*-of-N would match and delete).')
DEAD_LETTERS = (
    DEAD_LETTER_FILES,
    Flag('dead_letter_table',
         help='BigQuery table, PROJECT:DATASET.TABLE, for rejected records '
         '(raw input as JSON text, partitioned by day on dead_lettered_at). '
         'Default when only --output_table is given: <output_table>_errors.'),
)
NUM_SHARDS = Flag('num_shards', type=int, default=0,
                  help='Output shards; 0 lets the runner decide (default).')


def bigquery_write(default, default_help):
  """The --bq_write_method and --bq_insert_retries flags; `default` is the
  method (None: the job picks by mode), `default_help` says what it is."""
  return (
      Flag('bq_write_method', choices=bigquery.WRITE_METHODS, default=default,
           help=f'How rows reach BigQuery (default: {default_help}). '
           'STREAMING_INSERTS makes rows visible at once; STORAGE_WRITE_API '
           'runs as a Java cross-language transform.'),
      Flag('bq_insert_retries', type=int,
           default=bigquery.DEFAULT_INSERT_RETRIES,
           help='STREAMING_INSERTS: retries of a row failing with a transient '
           'error before it goes to the dead letters (default: '
           f'{bigquery.DEFAULT_INSERT_RETRIES}).'),
  )


def check_bigquery_write(args):
  if args.bq_insert_retries < 0:
    raise launch.UsageError('--bq_insert_retries', 'must be at least 0')


def dead_letter_table(args):
  """Where dead letters go in BigQuery, or None when they go to files."""
  if args.dead_letter_table:
    return args.dead_letter_table
  if args.output or args.dead_letter or not args.output_table:
    return None
  return f'{args.output_table}_errors'


def dead_letter_prefix(args):
  return args.dead_letter or f'{args.output}_errors'


def dead_letter_sink(args):
  """The transform that writes the job's flattened dead letters."""
  table = dead_letter_table(args)
  if table:
    return bigquery.WriteDeadLetterTable(table, args.bq_write_method,
                                         args.bq_insert_retries)
  return sinks.WriteDeadLetters(dead_letter_prefix(args))


def dead_letters_under(args):
  """Where the summary says the dead letters are."""
  return dead_letter_table(args) or f'{dead_letter_prefix(args)}*'


# Kernel filesystems: a path under them is never where a user meant output to
# go, and writes there fail (or worse) only when the job ends.
_KERNEL_TREES = ('/proc', '/sys', '/dev')


def check_writable(flag, path, folder=False):
  """Refuses, with one line naming `flag`, a local output that could not be
  written: the folder a prefix (or, folder=True, the folder itself) would be
  created in is a file, a kernel filesystem or not writable. Checked when
  the job is built, not when its sink fails after every record was read;
  remote paths (gs://) are left to their credentials check."""
  if not path or '://' in path:
    return
  target = os.path.abspath(path if folder else os.path.dirname(
      os.path.abspath(path)))
  if any(target == tree or target.startswith(tree + '/')
         for tree in _KERNEL_TREES):
    raise launch.UsageError(flag, f'cannot write under {target!r}: a kernel '
                            'filesystem, not a place for files')
  existing = target
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise launch.UsageError(flag, f'cannot write under {target!r}: '
                            f'{existing!r} is a file')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise launch.UsageError(flag, f'cannot write under {target!r}: '
                            f'{existing!r} is not writable')


def check_files_writable(args):
  """--output and, when dead letters go to files, --dead_letter."""
  check_writable('--output', args.output)
  if not dead_letter_table(args):
    check_writable('--dead_letter' if args.dead_letter else '--output',
                   dead_letter_prefix(args))
