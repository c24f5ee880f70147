"""Streaming comment moderation: one mention of a person per commenter per day.

  streaming:    python -m pipelines.moderate \\
                  --input_subscription projects/P/subscriptions/S \\
                  --output_topic projects/P/topics/decisions \\
                  --dead_letter_topic projects/P/topics/moderation-dead-letters
  batch replay: python -m pipelines.moderate --input 'comments*.jsonl' \\
                  --output out/moderation

Both modes run the same transforms (parse -> key by commenter -> entities ->
the stateful event-time rule), so a replay of the same comments gives the
same decisions. See docs/moderation.md.
"""
import argparse
import json
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions

from pipelines import local_runner
from pipelines import file_inputs
from pipelines import gcp
from pipelines import launch
from pipelines import summary
from transforms.io import bigquery
from transforms.io import bigquery_schemas
from transforms.moderation import comments as comments_lib
from transforms.moderation import entities as entities_lib
from transforms.moderation import rule as moderation_rule
from transforms.dead_letter import DEAD_LETTER


def build_parser():
  """Every flag of the moderation pipeline, declared once: --help, validation,
  README and the Flex Template metadata all derive from this parser.
  Unrecognised flags are Beam pipeline options."""
  parser = argparse.ArgumentParser(
      prog='python -m pipelines.moderate', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  io = parser.add_argument_group('input and output')
  io.add_argument(
      '--input', default=None,
      help='Batch replay: file pattern of JSON-lines comments, one '
      '{"comment_id", "commenter_id", "text", "timestamp"} per line.')
  io.add_argument(
      '--output', default=None,
      help='Batch replay: output prefix; writes PREFIX-decisions-*.jsonl '
      'and PREFIX-dead_letters-*.jsonl.')
  io.add_argument(
      '--input_subscription', default=None,
      help='Streaming: Pub/Sub subscription to read comments from '
      '(projects/P/subscriptions/S).')
  io.add_argument(
      '--input_topic', default=None,
      help='Streaming: Pub/Sub topic to read comments from (a temporary '
      'subscription is created; prefer --input_subscription).')
  io.add_argument(
      '--output_topic', default=None,
      help='Streaming: Pub/Sub topic the decisions are published to.')
  io.add_argument(
      '--dead_letter_topic', default=None,
      help='Streaming: Pub/Sub topic for dead letters (unparseable, '
      'invalid, late, duplicate, api_failure); required in streaming.')
  io.add_argument(
      '--output_table', default=None,
      help='Also write the decisions to this BigQuery table, '
      'PROJECT:DATASET.TABLE (appended to; created when absent, partitioned '
      'by day on the comment timestamp). Rows BigQuery refuses go to the '
      'dead letters.')
  io.add_argument(
      '--bq_write_method', default=None, choices=bigquery.WRITE_METHODS,
      help='How decisions reach BigQuery. Default: STREAMING_INSERTS in '
      'streaming, FILE_LOADS (needs a gs:// --temp_location) in batch replay.')
  io.add_argument(
      '--bq_insert_retries', type=int,
      default=bigquery.DEFAULT_INSERT_RETRIES,
      help='STREAMING_INSERTS: retries of a row failing with a transient '
      'error before it goes to the dead letters (default: '
      f'{bigquery.DEFAULT_INSERT_RETRIES}).')
  io.add_argument(
      '--timestamp_attribute', default=None,
      help='Streaming: Pub/Sub attribute holding the event time (RFC 3339 '
      'or epoch milliseconds); drives the watermark and is the event time '
      'of messages without a "timestamp" field. Default: publish time.')
  rule = parser.add_argument_group('the rule')
  rule.add_argument(
      '--window_hours', type=float, default=24.0,
      help='A mention is blocked while the commenter has an allowed '
      'comment mentioning the same entity within this many hours.')
  rule.add_argument(
      '--allowed_lateness', type=float, default=300.0,
      help='Streaming: seconds a comment may arrive behind the watermark '
      'and still be decided in event-time order; decisions wait this long '
      'after event time. Later comments go to the dead letter as "late".')
  rule.add_argument(
      '--decision_interval', type=float, default=1.0,
      help='Streaming: seconds of event time whose ready comments a '
      'commenter has decided together (one timer firing); decisions come at '
      'most this much later, and are the same. 0: one firing per distinct '
      'event time (more runner work per comment).')
  rule.add_argument(
      '--max_text_chars', type=int,
      default=comments_lib.DEFAULT_MAX_TEXT_CHARS,
      help='Longer comments go to the dead letter as "oversized_text".')
  ents = parser.add_argument_group('entities')
  ents.add_argument(
      '--entity_backend', default='local', choices=entities_lib.BACKENDS,
      help='local: offline spaCy NER + the alias table; nlp: Google Cloud '
      'Natural Language analyze_entities (knowledge-graph ids).')
  ents.add_argument(
      '--entity_types', default=','.join(entities_lib.DEFAULT_ENTITY_TYPES),
      help='Comma-separated entity types that count (as the backend names '
      'them, e.g. PERSON; spaCy: ORG, GPE; Cloud NL: ORGANIZATION, '
      'LOCATION).')
  ents.add_argument(
      '--alias_table', default=None,
      help='local backend: TSV alias table to use instead of the built-in '
      'transforms/moderation/knowledge/person_aliases.tsv (same format).')
  ents.add_argument(
      '--entity_batch_size', type=int,
      help='Comments annotated together (spaCy batch / concurrent API '
      'calls in flight per bundle). Default: 64 for the local backend '
      '(spaCy runs ~7%% faster than at 32 here), 32 for nlp.')
  ents.add_argument(
      '--nlp_endpoint', default=entities_lib.DEFAULT_NLP_ENDPOINT,
      help='nlp backend: API endpoint host[:port].')
  ents.add_argument(
      '--nlp_insecure', **launch.SWITCH,
      help='nlp backend: plaintext gRPC with anonymous credentials, for a '
      'local stand-in server only.')
  ents.add_argument(
      '--nlp_concurrency', type=int, default=8,
      help='nlp backend: concurrent requests per worker thread.')
  ents.add_argument(
      '--nlp_timeout', type=float, default=10.0,
      help='nlp backend: timeout of each call, seconds.')
  ents.add_argument(
      '--nlp_max_attempts', type=int, default=5,
      help='nlp backend: attempts per comment on RESOURCE_EXHAUSTED / '
      'UNAVAILABLE / DEADLINE_EXCEEDED, with exponential backoff; then '
      'the comment goes to the dead letter as "api_failure".')
  ents.add_argument(
      '--nlp_initial_backoff', type=float, default=0.5,
      help='nlp backend: first backoff between attempts, seconds '
      '(doubles, with jitter, up to 16 s).')
  return parser


def validate(o):
  """Raises launch.UsageError for an unusable command line; returns mode."""
  sources = [f for f, v in (('--input', o.input),
                            ('--input_subscription', o.input_subscription),
                            ('--input_topic', o.input_topic)) if v]
  if len(sources) != 1:
    raise launch.UsageError(
        '--input', 'give exactly one of --input (batch replay), '
        '--input_subscription or --input_topic (streaming)')
  streaming = sources[0] != '--input'
  if streaming:
    for flag, value in (('--output_topic', o.output_topic),
                        ('--dead_letter_topic', o.dead_letter_topic)):
      if not value:
        raise launch.UsageError(flag, 'required when reading from Pub/Sub')
    if o.output:
      raise launch.UsageError('--output', 'files are for batch replay; '
                              'streaming writes to --output_topic')
  else:
    if not o.output:
      raise launch.UsageError('--output', 'required with --input')
    for flag, value in (('--output_topic', o.output_topic),
                        ('--dead_letter_topic', o.dead_letter_topic),
                        ('--timestamp_attribute', o.timestamp_attribute)):
      if value:
        raise launch.UsageError(flag, 'only used when reading from Pub/Sub')
  if o.bq_insert_retries < 0:
    raise launch.UsageError('--bq_insert_retries', 'must be at least 0')
  if o.window_hours <= 0:
    raise launch.UsageError('--window_hours', 'must be positive')
  if o.allowed_lateness < 0:
    raise launch.UsageError('--allowed_lateness', 'must not be negative')
  if o.decision_interval < 0:
    raise launch.UsageError('--decision_interval', 'must not be negative')
  if o.max_text_chars <= 0:
    raise launch.UsageError('--max_text_chars', 'must be positive')
  if not entity_types(o):
    raise launch.UsageError('--entity_types', 'name at least one type')
  for flag, value in (('--entity_batch_size', o.entity_batch_size),
                      ('--nlp_concurrency', o.nlp_concurrency),
                      ('--nlp_max_attempts', o.nlp_max_attempts)):
    if value is not None and value < 1:
      raise launch.UsageError(flag, 'must be at least 1')
  if o.nlp_timeout <= 0:
    raise launch.UsageError('--nlp_timeout', 'must be positive')
  if o.alias_table:
    if o.entity_backend != 'local':
      raise launch.UsageError('--alias_table', 'only used by --entity_backend '
                              'local')
    from transforms.moderation import knowledge_graph
    try:
      knowledge_graph.AliasTable(knowledge_graph.read_rows(o.alias_table))
    except (OSError, ValueError) as e:
      raise launch.UsageError('--alias_table', str(e)) from e
  if not streaming:  # last: the flag checks above need no file system
    file_inputs.check_patterns(file_inputs.split_list(o.input))
  return 'streaming' if streaming else 'batch'


def entity_types(o):
  return tuple(t.strip().upper() for t in o.entity_types.split(',')
               if t.strip())


def _entity_transform(o):
  types = entity_types(o)
  sized = {'batch_size': o.entity_batch_size} if o.entity_batch_size else {}
  if o.entity_backend == 'local':
    extra = {'alias_table': o.alias_table} if o.alias_table else {}
    return entities_lib.ExtractEntities('local', types, **sized, **extra)
  return entities_lib.ExtractEntities(
      'nlp', types, **sized,
      endpoint=o.nlp_endpoint, insecure=o.nlp_insecure,
      concurrency=o.nlp_concurrency, timeout_s=o.nlp_timeout,
      max_attempts=o.nlp_max_attempts,
      initial_backoff_s=o.nlp_initial_backoff)


def to_json(record):
  return json.dumps(record, ensure_ascii=False)


def build(p, o, mode):
  """Adds the moderation graph to `p`; returns (decisions, dead_letters)."""
  streaming = mode == 'streaming'
  if streaming:
    messages = p | 'ReadPubSub' >> beam.io.ReadFromPubSub(
        subscription=o.input_subscription, topic=o.input_topic,
        timestamp_attribute=o.timestamp_attribute)
  else:
    messages = p | 'ReadFiles' >> beam.io.ReadFromText(o.input)
  parsed = messages | 'ReadComments' >> comments_lib.ReadComments(
      o.max_text_chars, timestamp_optional=streaming)
  keyed = parsed.comments | 'KeyByCommenter' >> beam.Map(
      comments_lib.key_by_commenter).with_output_types(
          beam.typehints.Tuple[str, beam.typehints.Any])
  annotated = keyed | 'Entities' >> _entity_transform(o)
  moderated = annotated.comments | 'Moderate' >> moderation_rule.ModerateComments(
      o.window_hours, o.allowed_lateness, bounded=not streaming,
      decision_interval_seconds=o.decision_interval)
  decisions = moderated.decisions
  dead_parts = [parsed[DEAD_LETTER], annotated[DEAD_LETTER],
                moderated[DEAD_LETTER]]
  if o.output_table:
    dead_parts.append(
        decisions | 'WriteDecisionsTable' >> bigquery.WriteTable(
            o.output_table, bigquery_schemas.DECISIONS_SCHEMA,
            bigquery_schemas.DECISIONS_PARTITION, _write_method(o, mode),
            o.bq_insert_retries, key_field='comment_id'))
  dead_letters = dead_parts | 'FlattenDeadLetters' >> beam.Flatten()
  if streaming:
    _ = (decisions | 'DecisionsJson' >> beam.Map(
        lambda r: to_json(r).encode('utf-8'))
         | 'WriteDecisions' >> beam.io.WriteToPubSub(o.output_topic))
    _ = (dead_letters | 'DeadLettersJson' >> beam.Map(
        lambda r: to_json(r).encode('utf-8'))
         | 'WriteDeadLetters' >> beam.io.WriteToPubSub(o.dead_letter_topic))
  else:
    _ = (decisions | 'DecisionsJson' >> beam.Map(to_json)
         | 'WriteDecisions' >> beam.io.WriteToText(
             o.output + '-decisions', file_name_suffix='.jsonl'))
    _ = (dead_letters | 'DeadLettersJson' >> beam.Map(to_json)
         | 'WriteDeadLetters' >> beam.io.WriteToText(
             o.output + '-dead_letters', file_name_suffix='.jsonl'))
  return decisions, dead_letters


def _write_method(o, mode):
  return o.bq_write_method or bigquery.default_write_method(
      mode == 'streaming')


def _check_cloud(o, mode, options):
  """Google Cloud problems found before anything runs: the table name,
  credentials, a FILE_LOADS write without a gs:// staging location."""
  gcp.check_table('--output_table', o.output_table)
  flag = gcp.first_cloud_flag([('--output_table', o.output_table),
                               ('--input', o.input), ('--output', o.output)])
  if flag:
    gcp.check_credentials(options, flag)
  if o.output_table:
    gcp.check_write_method(_write_method(o, mode), options)


def summarise(result):
  """The end-of-run summary rows, from Beam metrics."""
  counters = summary.counters(result)
  mod = counters.get(moderation_rule.METRICS_NAMESPACE, {})
  dead = summary.dead_letters_by_reason(counters)
  rows = [('comments read', mod.get('comments', 0)),
          ('allowed', mod.get('allowed', 0)),
          ('rejected', mod.get('rejected', 0)),
          ('dead letters', sum(dead.values())),
          ('dead letters by reason', dead),
          ('entities found', mod.get('entities_found', 0))]
  if mod.get('nlp_retries'):
    rows.append(('nlp retries', mod['nlp_retries']))
  return rows


def run(argv=None, wait=True):
  """Builds and runs the pipeline.

  Batch: waits, prints the summary and returns 0. Streaming: with wait=True
  blocks until the job ends (or, on Dataflow, returns once submitted as the
  runner does); with wait=False returns the PipelineResult so that a caller
  (the end-to-end test) can cancel it.
  """
  args, beam_args = launch.parse_args(build_parser(), argv)
  mode = validate(args)
  options = PipelineOptions(beam_args)
  if mode == 'streaming':
    options.view_as(StandardOptions).streaming = True
  launch.default_local_runner(options)
  _check_cloud(args, mode, options)
  local_streaming = mode == 'streaming' and launch.is_local_runner(options)
  if local_streaming:
    local_runner.widen_pulls()
    _entity_transform(args).load_now()
  p = beam.Pipeline(options=options)
  build(p, args, mode)
  if local_streaming:
    local_runner.publish_per_bundle(p)
  result = p.run()
  if mode == 'streaming':
    if not wait:
      return result
    result.wait_until_finish()
    return 0
  result.wait_until_finish()
  print(summary.format_summary('moderate', summarise(result)))
  return 0


if __name__ == '__main__':
  sys.exit(launch.main(run))
