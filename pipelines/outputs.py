"""Output flags several jobs share: dead letters, BigQuery writes, shards.

Every job sends its dead letters to files (JSONL under a prefix) or a
BigQuery table, and writes tables through Beam's WriteToBigQuery with the
same method and retry flags; declared here once, with the checks and the
sink they choose.
"""
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
