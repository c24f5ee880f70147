"""Streaming comment moderation: one mention of a person per commenter per day.

  streaming:    python -m pipelines.moderate \\
                  --input_subscription projects/P/subscriptions/S \\
                  --output_topic projects/P/topics/decisions \\
                  --dead_letter_topic projects/P/topics/moderation-dead-letters
  batch replay: python -m pipelines.moderate --input 'comments*.jsonl' \\
                  --output out/moderation

Both modes run the same transforms (parse -> one commenter per comment_id ->
key by commenter -> entities -> the stateful event-time rule), so a replay
of the same comments gives the same decisions. See docs/moderation.md.
"""
import sys

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.options.pipeline_options import StandardOptions

from common.records import decision
from pipelines import flags
from pipelines import gcp
from pipelines import inputs
from pipelines import launch
from pipelines import local_acks
from pipelines import local_runner
from pipelines import outputs
from pipelines import progress
from pipelines import summary
from pipelines.flags import Flag
from pipelines.flags import split_list
from transforms.dead_letter import DEAD_LETTER
from transforms.io import bigquery
from transforms.io import pubsub
from transforms.io import sinks
from transforms.moderation import comment_claims
from transforms.moderation import comment_ids
from transforms.moderation import comments as comments_lib
from transforms.moderation import entities as entities_lib
from transforms.moderation import outcomes
from transforms.moderation import rule as moderation_rule

_IO = 'input and output'
_RULE = 'the rule'
_ENTITIES = 'entities'
FLAGS = (
    Flag('input', group=_IO,
         help='Batch replay: file pattern of JSON-lines comments, one '
         '{"comment_id", "commenter_id", "text", "timestamp"} per line.'),
    Flag('output', group=_IO,
         help='Batch replay: output prefix; writes PREFIX-decisions-*.jsonl '
         'and PREFIX-dead_letters-*.jsonl.'),
    Flag('input_subscription', group=_IO,
         help='Streaming: Pub/Sub subscription to read comments from '
         '(projects/P/subscriptions/S).'),
    Flag('input_topic', group=_IO,
         help='Streaming: Pub/Sub topic to read comments from (a temporary '
         'subscription is created; prefer --input_subscription).'),
    Flag('output_topic', group=_IO,
         help='Streaming: Pub/Sub topic the decisions are published to.'),
    Flag('dead_letter_topic', group=_IO,
         help='Streaming: Pub/Sub topic for dead letters (unparseable, '
         'invalid, late, duplicate, api_failure); required in streaming.'),
    Flag('output_table', group=_IO,
         help='Also write the decisions to this BigQuery table, '
         'PROJECT:DATASET.TABLE (appended to; created when absent, '
         'partitioned by day on the comment timestamp). Rows BigQuery '
         'refuses go to the dead letters.'),
) + flags.in_group(_IO, outputs.bigquery_write(
    None, 'STREAMING_INSERTS in streaming, FILE_LOADS (needs a gs:// '
    '--temp_location) in batch replay')) + (
    Flag('timestamp_attribute', group=_IO,
         help='Streaming: Pub/Sub attribute holding the event time (RFC 3339 '
         'or epoch milliseconds); drives the watermark and is the event time '
         'of messages without a "timestamp" field. Default: publish time.'),
    Flag('window_hours', type=float, default=24.0, group=_RULE,
         help='A mention is blocked while the commenter has an allowed '
         'comment mentioning the same entity within this many hours.'),
    Flag('allowed_lateness', type=float, default=300.0, group=_RULE,
         help='Streaming: seconds a comment may arrive behind the watermark '
         'and still be decided in event-time order; decisions wait this long '
         'after event time. Later comments go to the dead letter as "late".'),
    Flag('decision_interval', type=float, default=1.0, group=_RULE,
         help='Streaming: seconds of event time whose ready comments a '
         'commenter has decided together (one timer firing); decisions come '
         'at most this much later, and are the same. 0: one firing per '
         'distinct event time (more runner work per comment).'),
    Flag('max_text_chars', type=int,
         default=comments_lib.DEFAULT_MAX_TEXT_CHARS, group=_RULE,
         help='Longer comments go to the dead letter as "oversized_text".'),
    Flag('entity_backend', default='local', choices=entities_lib.BACKENDS,
         group=_ENTITIES,
         help='local: offline spaCy NER + the alias table; nlp: Google Cloud '
         'Natural Language analyze_entities (knowledge-graph ids).'),
    Flag('entity_types', default=','.join(entities_lib.DEFAULT_ENTITY_TYPES),
         group=_ENTITIES,
         help='Comma-separated entity types that count (as the backend names '
         'them, e.g. PERSON; spaCy: ORG, GPE; Cloud NL: ORGANIZATION, '
         'LOCATION).'),
    Flag('alias_table', template_type='GCS_READ_FILE', group=_ENTITIES,
         help='Alias table (knowledge graph of people) to link entities with '
         'instead of the built-in one: a local or gs:// path, .tsv or .jsonl '
         '(optionally .gz); both backends link to its ids. Format: '
         'docs/moderation.md.'),
    Flag('title_prefixes', group=_ENTITIES,
         help='Comma-separated title words skipped before names and taken as '
         'evidence of a person ("president,chancellor,dr"); they replace the '
         'built-in list, or extend it when the value starts with "+" '
         '("+taoiseach,herr").'),
    Flag('entity_batch_size', type=int, group=_ENTITIES,
         help='Comments annotated together (spaCy batch / concurrent API '
         'calls in flight per bundle). Default: 64 for the local backend, 32 '
         'for nlp.'),
    Flag('nlp_endpoint', default=entities_lib.DEFAULT_NLP_ENDPOINT,
         group=_ENTITIES, help='nlp backend: API endpoint host[:port].'),
    Flag('nlp_insecure', switch=True, group=_ENTITIES,
         help='nlp backend: plaintext gRPC with anonymous credentials, for a '
         'local stand-in server only.'),
    Flag('nlp_concurrency', type=int, default=8, group=_ENTITIES,
         help='nlp backend: concurrent requests per worker thread.'),
    Flag('nlp_timeout', type=float, default=10.0, group=_ENTITIES,
         help='nlp backend: timeout of each call, seconds.'),
    Flag('nlp_max_attempts', type=int, default=5, group=_ENTITIES,
         help='nlp backend: attempts per comment on RESOURCE_EXHAUSTED / '
         'UNAVAILABLE / DEADLINE_EXCEEDED, with exponential backoff; then '
         'the comment goes to the dead letter as "api_failure".'),
    Flag('nlp_initial_backoff', type=float, default=0.5, group=_ENTITIES,
         help='nlp backend: first backoff between attempts, seconds '
         '(doubles, with jitter, up to 16 s).'),
    Flag('nlp_deadline', type=float, default=60.0, group=_ENTITIES,
         help='nlp backend: seconds a comment\'s attempts and backoffs may '
         'take in all; no attempt starts that could end later, and the '
         'comment goes to the dead letter as "api_failure".'),
    Flag('nlp_rate_limit', type=float, default=10.0, group=_ENTITIES,
         help='nlp backend: most API calls a second per worker process, '
         'spaced evenly, so a burst of comments is not a burst of calls; 0: '
         'no limit. Default 10: Cloud Natural Language\'s '
         'default quota of 600 requests a minute.'),
) + flags.in_group(_IO, (local_runner.FAST_PUBSUB,))
Options = flags.options_class('Moderate', FLAGS)


def build_parser():
  """Every flag of the moderation pipeline, from FLAGS: --help, validation,
  README and the Flex Template metadata all derive from it. Unrecognised
  flags are Beam pipeline options."""
  return flags.parser('python -m pipelines.moderate', __doc__, FLAGS,
                      raw=True)


class Transforms:
  """The job's transforms, configured once from the flags (each checks its
  own settings; a refused one is one usage line naming the flag)."""

  def __init__(self, o, mode):
    streaming = mode == 'streaming'
    with launch.flag_names():
      self.parse = comments_lib.ReadComments(
          o.max_text_chars, timestamp_optional=streaming)
      self.rule = moderation_rule.ModerateComments(
          o.window_hours, o.allowed_lateness, bounded=not streaming,
          decision_interval_seconds=o.decision_interval)
      self.entities = _entity_transform(o)
      # One commenter per comment_id: claimed as comments arrive in
      # streaming, the earliest commenter's over the whole input in batch.
      self.owners = (comment_claims.ClaimCommentIds(
          o.window_hours, o.allowed_lateness) if streaming
                     else comment_ids.OneCommenterPerId())


def validate(o):
  """Raises launch.UsageError for an unusable command line; returns
  (mode, the job's Transforms)."""
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
    outputs.check_writable('--output', o.output)
    for flag, value in (('--output_topic', o.output_topic),
                        ('--dead_letter_topic', o.dead_letter_topic),
                        ('--timestamp_attribute', o.timestamp_attribute)):
      if value:
        raise launch.UsageError(flag, 'only used when reading from Pub/Sub')
  outputs.check_bigquery_write(o)
  if not entity_types(o):
    raise launch.UsageError('--entity_types', 'name at least one type')
  for flag, value in (('--entity_batch_size', o.entity_batch_size),
                      ('--nlp_concurrency', o.nlp_concurrency),
                      ('--nlp_max_attempts', o.nlp_max_attempts)):
    if value is not None and value < 1:
      raise launch.UsageError(flag, 'must be at least 1')
  for flag, value in (('--nlp_timeout', o.nlp_timeout),
                      ('--nlp_deadline', o.nlp_deadline)):
    if value <= 0:
      raise launch.UsageError(flag, 'must be positive')
  if o.nlp_rate_limit < 0:
    raise launch.UsageError('--nlp_rate_limit', 'must not be negative')
  mode = 'streaming' if streaming else 'batch'
  steps = Transforms(o, mode)
  if not streaming:  # last: the flag checks above need no file system
    inputs.check_patterns(inputs.patterns_of(o.input))
  return mode, steps


def entity_types(o):
  return tuple(t.upper() for t in split_list(o.entity_types))


def _entity_transform(o):
  types = entity_types(o)
  sized = {'batch_size': o.entity_batch_size} if o.entity_batch_size else {}
  sized.update(alias_table=o.alias_table, title_prefixes=(
      split_list(o.title_prefixes) if o.title_prefixes else None))
  if o.entity_backend == 'local':
    return entities_lib.ExtractEntities('local', types, **sized)
  return entities_lib.ExtractEntities(
      'nlp', types, **sized,
      endpoint=o.nlp_endpoint, insecure=o.nlp_insecure,
      concurrency=o.nlp_concurrency, timeout_s=o.nlp_timeout,
      max_attempts=o.nlp_max_attempts,
      initial_backoff_s=o.nlp_initial_backoff,
      rate_limit_per_s=o.nlp_rate_limit, deadline_s=o.nlp_deadline)


def build(p, o, mode, steps):
  """Adds the moderation graph to `p`; returns (decisions, dead_letters)."""
  streaming = mode == 'streaming'
  if streaming:
    messages = p | 'ReadPubSub' >> beam.io.ReadFromPubSub(
        subscription=o.input_subscription, topic=o.input_topic,
        timestamp_attribute=o.timestamp_attribute)
  else:
    # As bytes, like Pub/Sub messages: a line that is not UTF-8 is a dead
    # letter (comments.py), where ReadFromText's decoding fails the job.
    messages = p | 'ReadFiles' >> beam.io.ReadFromText(
        o.input, coder=BytesCoder())
  parsed = messages | 'ReadComments' >> steps.parse
  comments = parsed.comments
  dead_parts = [parsed[DEAD_LETTER]]
  owned = comments | 'OneCommenterPerId' >> steps.owners
  comments = owned.main
  dead_parts.append(owned.dead_letter)
  keyed = comments | 'KeyByCommenter' >> beam.Map(
      comments_lib.key_by_commenter).with_output_types(
          beam.typehints.Tuple[str, beam.typehints.Any])
  annotated = keyed | 'Entities' >> steps.entities
  moderated = annotated.comments | 'Moderate' >> steps.rule
  decisions = moderated.decisions
  dead_parts += [annotated[DEAD_LETTER], moderated[DEAD_LETTER]]
  if o.output_table:
    dead_parts.append(
        decisions | 'WriteDecisionsTable' >> bigquery.WriteTable(
            o.output_table, decision.SHAPE, _write_method(o, mode),
            o.bq_insert_retries))
  dead_letters = dead_parts | 'FlattenDeadLetters' >> beam.Flatten()
  if streaming:
    _ = decisions | 'WriteDecisions' >> pubsub.WriteJson(o.output_topic)
    _ = dead_letters | 'WriteDeadLetters' >> pubsub.WriteJson(
        o.dead_letter_topic)
  else:
    _ = decisions | 'WriteDecisions' >> sinks.WriteJsonLines(
        o.output + '-decisions')
    _ = dead_letters | 'WriteDeadLetters' >> sinks.WriteJsonLines(
        o.output + '-dead_letters')
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
  mode, steps = validate(args)
  options = flags.pipeline_options(beam_args, args, FLAGS)
  if mode == 'streaming':
    options.view_as(StandardOptions).streaming = True
  local_runner.pick_runner(options)
  _check_cloud(args, mode, options)
  p = beam.Pipeline(options=options)
  build(p, args, mode, steps)
  # Locally a message is acknowledged once its decision or dead letter is
  # published, so a killed job loses nothing (pipelines/local_acks.py).
  acks = local_acks.AckOnOutcome(outcomes.message_keys, outcomes.outcome_key)
  local_runner.speed_up(p, args.local_fast_pubsub, acks=acks)
  if mode == 'streaming' and local_runner.is_local(options):
    steps.entities.load_now()
  result = progress.run(p)
  if mode == 'streaming':
    if not wait:
      return result
    result.wait_until_finish()
    return 0
  result.wait_until_finish()
  print(summary.format_summary('moderate', summarise(result)))
  return 0


def main(argv=None):
  """The `rs-moderate` command: run() with one-line usage errors (exit 2)."""
  return launch.main(run, argv)


if __name__ == '__main__':
  sys.exit(main())
