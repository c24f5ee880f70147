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
import argparse
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import file_inputs
from pipelines import gcp
from transforms.keyed import keyed_input
from pipelines import launch
from pipelines import summary
from transforms.io import bigquery
from transforms.io import bigquery_schemas
from transforms.io import sinks
from transforms.io import sources
from transforms.inference.chunked import RunChunkInference
from transforms.dead_letter import DEAD_LETTER
from transforms.inference.signature_handler import DEFAULT_BATCH_SIZE
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.inference.prediction_log import WritePredictionLog
from transforms.inference.predictions import LOG
from transforms.inference.predictions import FormatPredictionChunks
from transforms.inference.predictions import arrow_schema
from transforms.inference.predictions import avro_schema
from transforms.inference.predictions import stringify_passthrough
from transforms.record_chunks import Unchunk


def build_parser():
  """The job's flags, declared once: --help, validation, README and the Flex
  Template metadata all derive from this parser."""
  parser = argparse.ArgumentParser(
      prog='python -m pipelines.batch_predict',
      description='Keyed batch predictions over sharded inputs with a '
      'SavedModel signature. Unrecognised flags are Beam pipeline options '
      '(--runner, --direct_num_workers, ...).')
  parser.add_argument(
      '--input', action='append',
      help='Input file pattern, local or gs:// (repeat the flag or separate '
      'patterns with commas for several). One of --input, --input_table '
      'and --input_query is required.')
  parser.add_argument(
      '--input_table',
      help='Input BigQuery table, PROJECT:DATASET.TABLE, read with the '
      'Storage Read API; one row per record.')
  parser.add_argument(
      '--input_query',
      help='Input BigQuery standard-SQL query; one result row per record. '
      'Needs a real BigQuery (query results go through a temporary table).')
  file_inputs.add_arguments(parser)
  parser.add_argument(
      '--model_dir', required=True,
      help='SavedModel directory: local path, gs:// path or TF-Hub handle.')
  parser.add_argument(
      '--signature', default='serving_default',
      help='Serving signature to call (default: serving_default).')
  parser.add_argument(
      '--model_version',
      help='Version recorded on every prediction (default: derived from '
      '--model_dir, e.g. "sentiment/1").')
  parser.add_argument(
      '--feature_map', default='',
      help='Comma-separated INPUT=FIELD pairs mapping signature inputs to '
      'record fields, e.g. "reviews=text"; unmapped inputs read the field of '
      'the same name.')
  parser.add_argument(
      '--passthrough_fields', default='',
      help='Comma-separated input fields copied into each output record.')
  parser.add_argument(
      '--output',
      help='Output prefix for sharded prediction files, local or gs:// '
      '(this and/or --output_table is required).')
  parser.add_argument(
      '--output_table',
      help='BigQuery table, PROJECT:DATASET.TABLE, for the keyed predictions '
      '(appended to; created when absent, partitioned by day on '
      'predicted_at). Passthrough fields are STRING columns.')
  parser.add_argument(
      '--output_format', choices=sinks.OUTPUT_FORMATS, default='jsonl',
      help='Prediction file format (default: jsonl).')
  parser.add_argument(
      '--dead_letter',
      help='Output prefix for rejected records, as JSONL (default: '
      '<output>_errors; not <output>-errors, which the prediction sink\'s '
      'shard glob <output>-*-of-N would match and delete).')
  parser.add_argument(
      '--dead_letter_table',
      help='BigQuery table, PROJECT:DATASET.TABLE, for rejected records '
      '(raw input as JSON text, partitioned by day on dead_lettered_at). '
      'Default when only --output_table is given: <output_table>_errors.')
  parser.add_argument(
      '--bq_write_method', choices=bigquery.WRITE_METHODS,
      default=bigquery.FILE_LOADS,
      help='How rows reach BigQuery (default: FILE_LOADS, load jobs staged '
      'under a gs:// --temp_location). STREAMING_INSERTS makes rows visible '
      'at once; STORAGE_WRITE_API runs as a Java cross-language transform.')
  parser.add_argument(
      '--bq_insert_retries', type=int,
      default=bigquery.DEFAULT_INSERT_RETRIES,
      help='STREAMING_INSERTS: retries of a row failing with a transient '
      'error before it goes to the dead letter (default: '
      f'{bigquery.DEFAULT_INSERT_RETRIES}).')
  parser.add_argument(
      '--model_name',
      help='Model name recorded in the prediction log (default: derived '
      'from --model_dir, e.g. "sentiment").')
  parser.add_argument(
      '--prediction_log',
      help='Output prefix for a sampled prediction log (JSONL rows: model, '
      'model_version, time, key, raw_data, raw_prediction, groundtruth) that '
      'pipelines.evaluate joins with ground truth later.')
  parser.add_argument(
      '--log_sample_rate', type=float, default=1.0,
      help='Share of keys written to --prediction_log, 0..1 (default 1); '
      'chosen by a hash of the key, so reruns log the same keys.')
  parser.add_argument(
      '--batch_size', type=int, default=DEFAULT_BATCH_SIZE,
      help=f'Records per model call (default: {DEFAULT_BATCH_SIZE}).')
  keyed_input.add_inference_threads_argument(parser)
  parser.add_argument(
      '--num_shards', type=int, default=0,
      help='Output shards; 0 lets the runner decide (default).')
  return parser


def _parse_feature_map(text):
  mapping = {}
  for pair in file_inputs.split_list(text):
    name, sep, field = pair.partition('=')
    if not sep or not name.strip() or not field.strip():
      raise launch.UsageError(
          '--feature_map', f'{pair!r} is not INPUT=FIELD')
    mapping[name.strip()] = field.strip()
  return mapping


def dead_letter_prefix(args):
  return args.dead_letter or f'{args.output}_errors'


def validate(args):
  """Checks the command line before anything runs; returns the resolved
  configuration (patterns, format, signature, feature map)."""
  from models.runtime import signatures as sigs
  if not (args.output or args.output_table):
    raise launch.UsageError(
        '--output', 'pass --output (files) and/or --output_table (BigQuery)')
  if args.bq_insert_retries < 0:
    raise launch.UsageError('--bq_insert_retries', 'must be at least 0')
  patterns = file_inputs.patterns_of(args)
  file_inputs.check_patterns(patterns)
  # A BigQuery table or query has no format: its rows are the records.
  input_format = file_inputs.resolve_format(args, patterns) if patterns else None
  if args.batch_size < 1:
    raise launch.UsageError('--batch_size', 'must be at least 1')
  keyed_input.check_inference_threads(args)
  if not 0 <= args.log_sample_rate <= 1:
    raise launch.UsageError('--log_sample_rate', 'must be between 0 and 1')
  if args.max_text_bytes < 1:
    raise launch.UsageError('--max_text_bytes', 'must be at least 1')
  try:
    signature = sigs.get_signature(args.model_dir, args.signature)
  except sigs.SignatureNotFound as e:
    raise launch.UsageError('--signature', str(e))
  except (OSError, IOError, ValueError) as e:
    raise launch.UsageError(
        '--model_dir', f'cannot read a SavedModel at {args.model_dir!r}: {e}')
  feature_map = _parse_feature_map(args.feature_map)
  unknown = sorted(set(feature_map) - set(signature.inputs))
  if unknown:
    raise launch.UsageError(
        '--feature_map', f'unknown signature input(s) {unknown}; signature '
        f'{args.signature!r} takes {sorted(signature.inputs)}')
  return patterns, input_format, signature, feature_map


class _PredictChunks(beam.PTransform):
  """Chunks of valid (key, record) -> FormatPredictionChunks' outputs."""

  def __init__(self, handler, threads, passthrough, model_name, input_fields):
    super().__init__()
    self._infer = RunChunkInference(handler, threads)
    self._format = FormatPredictionChunks(passthrough, model_name, input_fields)

  def expand(self, chunks):
    return chunks | 'Infer' >> self._infer | 'Format' >> self._format


def build(pipeline, args, patterns, input_format, signature, feature_map):
  """Composes the job on `pipeline`.

  The hot path moves chunks of records (transforms.record_chunks): read ->
  key and validate -> RunInference -> format -> write, fused into one stage
  per worker. Records whose key is repeated take a side path (grouped,
  one kept, validated) and rejoin as prediction lines before the sink.
  """
  from models.runtime import signatures as sigs
  passthrough = file_inputs.split_list(args.passthrough_fields)
  handler = SignatureModelHandler(
      args.model_dir, list(signature.inputs), signature=args.signature,
      feature_map=feature_map,
      model_version=args.model_version or sigs.default_model_version(
          args.model_dir),
      batch_size=args.batch_size)
  model_name = None
  if args.prediction_log:
    model_name = args.model_name or sigs.default_model_name(args.model_dir)
  local = launch.is_local_runner(pipeline.options)

  read = keyed_input.read_chunks(pipeline, patterns, input_format,
                                 args.batch_size, args.input_table,
                                 args.input_query)
  valid, dead = keyed_input.keyed_valid_chunks(
      pipeline, args, patterns, input_format, read, signature.inputs,
      feature_map, args.batch_size)

  input_fields = {name: feature_map.get(name, name) for name in signature.inputs}
  threads = keyed_input.inference_threads(args, local)
  formatted = [chunks | f'Predict{label}' >> _PredictChunks(
      handler, threads, passthrough, model_name, input_fields)
               for label, chunks in valid.items()]
  dead += [f[DEAD_LETTER] for f in formatted]
  predictions = tuple(f.main for f in formatted)
  if args.prediction_log:
    _ = tuple(f[LOG] for f in formatted) | 'Write prediction log' >> (
        WritePredictionLog(args.prediction_log, args.log_sample_rate))

  if args.output and args.output_format == 'jsonl':
    _ = predictions | 'Write predictions' >> sinks.WriteJsonLineChunks(
        args.output, args.num_shards)
  elif args.output:
    make_schema = avro_schema if args.output_format == 'avro' else arrow_schema
    _ = (predictions
         | 'Merge predictions' >> beam.Flatten()
         | 'Prediction records' >> Unchunk()
         | 'Typed passthrough' >> beam.Map(stringify_passthrough, passthrough)
         | 'Write predictions' >> sinks.WriteRecords(
             args.output, args.output_format,
             make_schema(signature.outputs, passthrough), args.num_shards))
  if args.output_table:
    dead.append(
        predictions
        | 'Merge table predictions' >> beam.Flatten()
        | 'Table records' >> Unchunk()
        | 'Table passthrough' >> beam.Map(stringify_passthrough, passthrough)
        | 'Write predictions table' >> bigquery.WriteTable(
            args.output_table,
            bigquery_schemas.predictions_schema(signature.outputs, passthrough),
            bigquery_schemas.PREDICTIONS_PARTITION, args.bq_write_method,
            args.bq_insert_retries))
  all_dead = dead | 'All dead letters' >> beam.Flatten()
  dead_letter_table = _dead_letter_table(args)
  if dead_letter_table:
    _ = all_dead | 'Write dead letters' >> bigquery.WriteDeadLetterTable(
        dead_letter_table, args.bq_write_method, args.bq_insert_retries)
  else:
    _ = all_dead | 'Write dead letters' >> sinks.WriteDeadLetters(
        dead_letter_prefix(args))


def _dead_letter_table(args):
  """Where dead letters go in BigQuery, or None when they go to files."""
  if args.dead_letter_table:
    return args.dead_letter_table
  if args.output or args.dead_letter or not args.output_table:
    return None
  return f'{args.output_table}_errors'


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
  if args.output_table or _dead_letter_table(args):
    gcp.check_write_method(args.bq_write_method, options)


def run(argv=None):
  """Runs the job; returns the summary figures as a dict."""
  args, beam_args = launch.parse_args(build_parser(), argv)
  options = launch.default_local_runner(PipelineOptions(beam_args))
  _check_source(args)
  _check_cloud(args, options)
  patterns, input_format, signature, feature_map = validate(args)
  started = time.time()
  pipeline = beam.Pipeline(options=options)
  build(pipeline, args, patterns, input_format, signature, feature_map)
  result = pipeline.run()
  result.wait_until_finish()
  elapsed = time.time() - started

  counts = summary.counters(result)
  inputs = counts.get('read', {}).get(sources.RECORDS, 0)
  by_reason = summary.dead_letters_by_reason(counts)
  # A prediction the table refused is a dead letter, not an output.
  predicted = counts.get('output', {}).get('predictions', 0) - sum(
      by_reason.get(r, 0) for r in bigquery.WRITE_REASONS)
  dead_total = sum(by_reason.values())
  figures = {
      'inputs': inputs, 'predictions': predicted,
      'dead_letters': dead_total, 'dead_letters_by_reason': by_reason,
      'elapsed_s': round(elapsed, 2),
      'records_per_s': round(inputs / elapsed, 1) if elapsed else 0.0,
      'reconciled': inputs == predicted + dead_total,
  }
  print(summary.format_summary('batch_predict summary', [
      ('inputs', inputs), ('predictions', predicted),
      ('dead letters', dead_total), ('dead letters by reason', by_reason),
      ('elapsed (s)', elapsed), ('records/second', figures['records_per_s']),
      ('inputs = predictions + dead letters',
       'yes' if figures['reconciled'] else 'NO'),
      ('prediction log rows',
       counts.get('prediction_log', {}).get('logged', 0)),
      ('predictions under', ', '.join(
          x for x in (args.output and f'{args.output}*', args.output_table)
          if x)),
      ('dead letters under', _dead_letter_table(args) or
       f'{dead_letter_prefix(args)}*'),
  ]))
  return figures


if __name__ == '__main__':
  sys.exit(launch.main(run))
