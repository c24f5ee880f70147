"""Batch serving: keyed predictions over sharded inputs (the main job).

read -> attach keys -> drop duplicate keys -> validate features ->
RunInference (a SavedModel signature, batched, model loaded once per worker)
-> keyed prediction records; every rejected record leaves, with its key and
reason, for the dead-letter output. Inputs = predictions + dead letters.
Inputs and outputs are files (local or gs://) or BigQuery tables.

    python -m pipelines.batch_predict \\
        --input 'data/demo/inputs/jsonl/*.jsonl' --feature_map reviews=text \\
        --model_dir data/models/sentiment/1 --output out/predictions

    python -m pipelines.batch_predict \\
        --input_table my-project:reviews.incoming --feature_map reviews=text \\
        --model_dir gs://my-bucket/models/sentiment/1 \\
        --output_table my-project:reviews.predictions \\
        --runner DataflowRunner --project my-project --region us-central1 \\
        --temp_location gs://my-bucket/tmp
"""
import sys

import apache_beam as beam

from common.records import prediction
from pipelines import flags
from pipelines import gcp
from pipelines import inputs
from pipelines import launch
from pipelines import local_runner
from pipelines import model
from pipelines import outputs
from pipelines import summary
from pipelines.flags import Flag
from pipelines.flags import split_list
from transforms.inference.chunked import default_threads
from transforms.inference.prediction_log import WritePredictionLog
from transforms.inference.predictions import LOG
from transforms.inference.predictions import PredictChunks
from transforms.inference.predictions import PredictionRecords
from transforms.io import bigquery
from transforms.io import sinks
from transforms.io import sources
from transforms.keyed.keyed_input import KeyedInput

DESCRIPTION = (
    'Keyed batch predictions over sharded inputs with a SavedModel '
    'signature. Unrecognised flags are Beam pipeline options (--runner, '
    '--direct_num_workers, ...).')
SOURCES = (
    Flag('input', repeat=True,
         help='Input file pattern, local or gs:// (repeat the flag or '
         'separate patterns with commas for several). One of --input, '
         '--input_table and --input_query is required.'),
    Flag('input_table',
         help='Input BigQuery table, PROJECT:DATASET.TABLE, read with the '
         'Storage Read API; one row per record.'),
    Flag('input_query', template_type='TEXT',
         help='Input BigQuery standard-SQL query; one result row per record. '
         'Needs a real BigQuery (query results go through a temporary '
         'table).'),
)
SINKS = (
    Flag('output',
         help='Output prefix for sharded prediction files, local or gs:// '
         '(this and/or --output_table is required).'),
    Flag('output_table',
         help='BigQuery table, PROJECT:DATASET.TABLE, for the keyed '
         'predictions (appended to; created when absent, partitioned by day '
         'on predicted_at). Passthrough fields are STRING columns.'),
    Flag('output_format', choices=sinks.OUTPUT_FORMATS, default='jsonl',
         help='Prediction file format (default: jsonl).'),
) + outputs.DEAD_LETTERS + outputs.bigquery_write(
    bigquery.FILE_LOADS, 'FILE_LOADS, load jobs staged under a gs:// '
    '--temp_location')
LOG_TIME = Flag(
    'log_time_field',
    help='The input field whose time (ISO-8601 with an offset, or epoch '
    'seconds) --prediction_log rows carry instead of the run\'s time: a '
    'replayed history (models.demo_data --history_weeks writes one). A '
    'record without a usable time is logged at the run\'s time and counted.')
FLAGS = (SOURCES + inputs.KEYED_INPUT + model.MODEL + SINKS +
         model.PREDICTION_LOG + (LOG_TIME, model.INFERENCE_THREADS,
                                 model.SHARE_MODEL, outputs.NUM_SHARDS))
Options = flags.options_class('BatchPredict', FLAGS)


def build_parser():
  """The job's flags: --help, validation, README and the Flex Template
  metadata all derive from FLAGS."""
  return flags.parser('python -m pipelines.batch_predict', DESCRIPTION,
                       FLAGS)


class Job:
  """The job's resolved configuration: every flag checked, once, before
  anything runs; what `build` composes the pipeline from."""

  def __init__(self, args, options):
    self.args = args
    _check_source(args)
    _check_cloud(args, options)
    if not (args.output or args.output_table):
      raise launch.UsageError(
          '--output', 'pass --output (files) and/or --output_table (BigQuery)')
    outputs.check_bigquery_write(args)
    outputs.check_files_writable(args)
    outputs.check_writable('--prediction_log', args.prediction_log)
    if args.log_time_field and not args.prediction_log:
      raise launch.UsageError('--log_time_field', 'needs --prediction_log')
    model.check_counts(args)
    local = local_runner.is_local(options)
    patterns = inputs.patterns_of(args.input)
    inputs.check_patterns(patterns)
    # A BigQuery table or query has no format: its rows are the records.
    input_format = (inputs.resolve_format(args.input_format, patterns)
                    if patterns else None)
    self.input = inputs.keyed_input_config(
        args, args.batch_size, local, patterns, input_format,
        args.input_table, args.input_query)
    self.signature = model.read_signature(args.model_dir, args.signature)
    self.feature_map = model.feature_map(args.feature_map, self.signature)
    inputs.check_fields(patterns, input_format, self.input.key_rule,
                        model.input_fields(self.signature, self.feature_map))
    self.handler = model.handler(
        args, self.signature, self.feature_map,
        share_across_processes=model.shares_model(args, options))
    self.model_name = model.model_name(args)
    self.passthrough = split_list(args.passthrough_fields)
    self.threads = (args.inference_threads if args.inference_threads is not None
                    else default_threads(local))
    self.shape = prediction.shape(self.signature.outputs, self.passthrough)
    self.dead_letter = outputs.dead_letter_sink(args)


def build(pipeline, job):
  """Composes the job on `pipeline`.

  The hot path moves chunks of records (transforms.record_chunks): read ->
  key and validate -> RunInference -> format -> write, fused into one stage
  per worker. Records whose key is repeated take a side path (grouped,
  one kept, validated) and rejoin as prediction lines before the sink.
  """
  args = job.args
  local_runner.host_shared_model(pipeline, job.handler)
  keyed = pipeline | 'Keyed input' >> KeyedInput(
      job.input, job.signature.inputs, job.feature_map)
  input_fields = {name: job.feature_map.get(name, name)
                  for name in job.signature.inputs}
  predicted = [chunks | f'Predict{label}' >> PredictChunks(
      job.handler, job.threads, job.passthrough, job.model_name, input_fields,
      args.log_time_field)
               for label, chunks in keyed.parts.items()]
  dead = [keyed.dead_letter] + [p.dead_letter for p in predicted]
  chunks = tuple(p.predictions for p in predicted)
  if args.prediction_log:
    _ = tuple(p[LOG] for p in predicted) | 'Write prediction log' >> (
        WritePredictionLog(args.prediction_log, args.log_sample_rate))
  if args.output and args.output_format == 'jsonl':
    _ = chunks | 'Write predictions' >> sinks.WriteJsonLineChunks(
        args.output, args.num_shards)
  elif args.output:
    _ = (chunks
         | 'Prediction records' >> PredictionRecords(job.passthrough)
         | 'Write predictions' >> sinks.WriteRecords(
             args.output, args.output_format, job.shape, args.num_shards))
  if args.output_table:
    dead.append(chunks
                | 'Table records' >> PredictionRecords(job.passthrough)
                | 'Write predictions table' >> bigquery.WriteTable(
                    args.output_table, job.shape, args.bq_write_method,
                    args.bq_insert_retries))
  _ = (dead
       | 'All dead letters' >> beam.Flatten()
       | 'Write dead letters' >> job.dead_letter)


def _check_source(args):
  given = [f for f in ('--input', '--input_table', '--input_query')
           if getattr(args, f[2:])]
  if len(given) != 1:
    raise launch.UsageError(
        '--input', 'give exactly one of --input (files), --input_table or '
        f'--input_query (BigQuery){"; got " + ", ".join(given) if given else ""}')


def _check_cloud(args, options):
  """Google Cloud problems found before anything runs (and before anything
  is read from Google Cloud): table names, credentials, and a
  FILE_LOADS write without a gs:// staging location."""
  for flag in ('input_table', 'output_table', 'dead_letter_table'):
    gcp.check_table(f'--{flag}', getattr(args, flag))
  flag = gcp.first_cloud_flag([
      ('--input_table', args.input_table), ('--input_query', args.input_query),
      ('--output_table', args.output_table),
      ('--dead_letter_table', args.dead_letter_table),
      ('--input', args.input), ('--model_dir', args.model_dir),
      ('--output', args.output), ('--dead_letter', args.dead_letter),
      ('--prediction_log', args.prediction_log)])
  if flag:
    gcp.check_credentials(options, flag)
  if args.output_table or outputs.dead_letter_table(args):
    gcp.check_write_method(args.bq_write_method, options)


def figures_of(counts, elapsed):
  """The run's figures, from its Beam metrics counters."""
  inputs_read = counts.get('read', {}).get(sources.RECORDS, 0)
  by_reason = summary.dead_letters_by_reason(counts)
  # A prediction the table refused is a dead letter, not an output.
  predicted = counts.get('output', {}).get('predictions', 0) - sum(
      by_reason.get(r, 0) for r in bigquery.WRITE_REASONS)
  dead_total = sum(by_reason.values())
  return {
      'inputs': inputs_read, 'predictions': predicted,
      'dead_letters': dead_total, 'dead_letters_by_reason': by_reason,
      'elapsed_s': round(elapsed, 2),
      'records_per_s': round(inputs_read / elapsed, 1) if elapsed else 0.0,
      'reconciled': inputs_read == predicted + dead_total,
      'logged': counts.get('prediction_log', {}).get('logged', 0),
      'log_time_unusable': counts.get('prediction_log', {}).get(
          'log_time_unusable', 0),
  }


def run(argv=None):
  """Runs the job; returns the summary figures as a dict."""
  job, result, elapsed = launch.run_batch_job(
      argv, build_parser(), FLAGS, Job, build)
  args = job.args
  counts = summary.counters(result)
  figures = figures_of(counts, elapsed)
  print(summary.format_summary('batch_predict summary', [
      ('inputs', figures['inputs']), ('predictions', figures['predictions']),
      ('dead letters', figures['dead_letters']),
      ('dead letters by reason', figures['dead_letters_by_reason']),
      *summary.input_rows(counts),
      ('elapsed (s)', figures['elapsed_s']),
      ('records/second', figures['records_per_s']),
      ('inputs = predictions + dead letters',
       'yes' if figures['reconciled'] else 'NO'),
      ('prediction log rows', figures.pop('logged')),
  ] + ([('logged at the run\'s time (no usable --log_time_field)',
         figures['log_time_unusable'])] if args.log_time_field else []) + [
      ('predictions under', ', '.join(
          x for x in (args.output and f'{args.output}*', args.output_table)
          if x)),
      ('dead letters under', outputs.dead_letters_under(args)),
  ]))
  warning = summary.one_reason_warning(figures['inputs'],
                                       figures['dead_letters_by_reason'])
  if warning:
    print(warning)
  return figures


def main(argv=None):
  """The `rs-batch-predict` command: run() with one-line usage errors (exit 2)."""
  return launch.main(run, argv)


if __name__ == '__main__':
  sys.exit(main())
