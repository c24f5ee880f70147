"""Streaming serving: keyed predictions over Pub/Sub, with gated model refresh.

  python -m pipelines.stream_predict \\
      --input_subscription projects/P/subscriptions/reviews \\
      --feature_map reviews=text --model_dir gs://B/models/sentiment/1 \\
      --output_topic projects/P/topics/predictions \\
      --dead_letter_topic projects/P/topics/prediction-dead-letters

  with gated model refresh (a new version predicts in shadow first):
      ... --watch_models 'gs://B/models/sentiment/*' \\
      --model_events_topic projects/P/topics/model-events

  and accuracy from labels of shadowed keys deciding in place of agreement:
      ... --labels_subscription projects/P/subscriptions/labels

read -> parse, key (--key_field, --attach_keys, --key_attribute), event time
(--timestamp_field or the publish time) and the batch job's feature checks
-> one prediction per key per --dedup_window -> RunInference (batched:
--batch_size, at most --max_batch_wait_ms of waiting) -> the batch job's
prediction records to a topic, a table and/or windowed files; every
rejected message, complete, to the dead letters. Messages in = predictions
+ dead letters. See docs/streaming_predict.md.
"""
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from common.records import prediction
from pipelines import flags
from pipelines import gcp
from pipelines import inputs
from pipelines import launch
from pipelines import local_acks
from pipelines import local_runner
from pipelines import model
from pipelines import outputs
from pipelines import progress
from pipelines.flags import Flag
from pipelines.flags import split_list
from transforms.inference.prediction_log import PredictionLogRows
from transforms.io import bigquery
from transforms.io import pubsub
from transforms.io import sinks
from transforms.keyed import keys
from transforms.record_chunks import Unchunk
from transforms.streaming.dedup import DropRepeatedKeys
from transforms.streaming.gate import GateRule
from transforms.streaming.gated_inference import GateConfig
from transforms.streaming.gated_inference import GatedPredictStream
from transforms.streaming.labels import LabelConfig
from transforms.streaming.labels import ParseLabels
from transforms.streaming.messages import MessageRules
from transforms.streaming.messages import ParseMessages
from transforms.streaming.outcomes import StreamOutcomes
from transforms.streaming.predict import PredictStream

_IO = 'input and output'
_KEYS = 'keys and checks'
_MODEL = 'model'
_GATE = 'model refresh (gated)'
_BY_NAME = {f.name: f for f in inputs.KEYED_INPUT}
SOURCES = (
    Flag('input_subscription',
         help='Pub/Sub subscription to read JSON messages from '
         '(projects/P/subscriptions/S), one record per message.'),
    Flag('input_topic',
         help='Pub/Sub topic to read from (a temporary subscription is '
         'created; prefer --input_subscription).'),
)
SINKS = (
    Flag('output_topic',
         help='Pub/Sub topic for the prediction records (one JSON message '
         'each). One or more of --output_topic, --output_table and --output '
         'is required.'),
    Flag('output_table',
         help='BigQuery table, PROJECT:DATASET.TABLE, for the prediction '
         'records (created when absent, partitioned by day on '
         'predicted_at). Rows BigQuery refuses go to the dead letters.'),
    Flag('output',
         help='Output prefix for windowed JSON-lines files of the '
         'predictions, local or gs:// (one set per --file_window).'),
    Flag('dead_letter_topic',
         help='Pub/Sub topic for dead letters (the complete message, its key '
         'when known, the stage and reason).'),
    outputs.DEAD_LETTER_FILES,
    Flag('file_window', type=float, default=60.0,
         help='Seconds of processing time per set of windowed files '
         '(predictions, dead letters, prediction log, model events).'),
) + outputs.bigquery_write(bigquery.STREAMING_INSERTS, 'STREAMING_INSERTS')
KEYING = (
    _BY_NAME['key_field'], _BY_NAME['attach_keys'],
    Flag('key_attribute',
         help='Pub/Sub attribute holding the client key (instead of '
         '--key_field / --attach_keys).'),
    inputs.TIMESTAMP_FIELD,
    _BY_NAME['max_text_bytes'],
    Flag('dedup_window', type=float, default=600.0,
         help='Seconds of event time in which a key seen again is predicted '
         'once: repeats within it go to the dead letters as duplicate_key; '
         'later repeats are predicted again. 0: every message is predicted.'),
)
BATCHING = (
    Flag('max_batch_wait_ms', type=float, default=100.0,
         help='Most milliseconds a message waits for its batch to fill '
         '(--batch_size) before the batch goes to the model, so a quiet '
         'stream is not held back.'),
)
PREDICTION_LOG_TOPIC = Flag(
    'prediction_log_topic',
    help='Pub/Sub topic for the sampled prediction-log rows (as '
    '--prediction_log writes them), for a streaming evaluation.')
GATE = (
    Flag('watch_models',
         help='Pattern of model version folders, local or gs:// (e.g. '
         '"gs://B/models/sentiment/*"): a new complete version (with '
         'saved_model.pb) newer than the live one is loaded without a '
         'restart, predicts in shadow and is promoted or rejected by the '
         'gate.'),
    Flag('watch_interval', type=float, default=10.0,
         help='Seconds between listings of --watch_models (while messages '
         'arrive).'),
    Flag('shadow_min_examples', type=int, default=1000,
         help='Messages a shadow version predicts before the gate decides.'),
    Flag('min_agreement', type=float, default=0.95,
         help='Share of messages on which the shadow must decide as live '
         'does to be promoted.'),
    Flag('max_error_rate_increase', type=float, default=0.01,
         help='Most the shadow\'s share of failed predictions may exceed '
         'live\'s.'),
    Flag('max_latency_ratio', type=float, default=1.5,
         help='Most the shadow\'s p99 model time per message may be, as a '
         'multiple of live\'s.'),
    Flag('decision_output', template_type='TEXT',
         help='Signature output compared for agreement (default: the first '
         'output by name).'),
    Flag('decision_threshold', type=float, default=0.5,
         help='A numeric output decides "value >= threshold"; a list of '
         'numbers decides its argmax.'),
    Flag('labels_subscription',
         help='Pub/Sub subscription of labels, JSON {"key", <label_field>}: '
         'once --min_labelled shadowed messages are labelled, accuracy '
         'replaces agreement in the gate. Needs --watch_models.'),
) + inputs.LABELS + (
    Flag('min_labelled', type=int, default=100,
         help='Labelled shadowed messages before accuracy counts; with fewer '
         'the gate decides on agreement and its event says so.'),
    Flag('max_accuracy_drop', type=float, default=0.0,
         help='Most the shadow\'s accuracy on labelled messages may be below '
         'live\'s.'),
    Flag('model_events_topic',
         help='Pub/Sub topic for model events (shadow, promoted, rejected, '
         'with the gate\'s figures).'),
    Flag('model_events',
         help='Output prefix for windowed JSON-lines files of the model '
         'events.'),
)
FLAGS = (flags.in_group(_IO, SOURCES + SINKS)
         + flags.in_group(_KEYS, KEYING)
         + flags.in_group(_MODEL, model.MODEL + BATCHING + model.PREDICTION_LOG
                          + (PREDICTION_LOG_TOPIC,))
         + flags.in_group(_GATE, GATE)
         + flags.in_group(_IO, (local_runner.FAST_PUBSUB,)))
Options = flags.options_class('StreamPredict', FLAGS)


def build_parser():
  """Every flag of the job, from FLAGS: --help, validation, the Flex
  Template metadata and docs/options.md derive from it."""
  return flags.parser('python -m pipelines.stream_predict', __doc__, FLAGS,
                      raw=True)


def _check_flags(args):
  """The flag combinations, before any file is read."""
  sources = [f for f in ('--input_subscription', '--input_topic')
             if getattr(args, f[2:])]
  if len(sources) != 1:
    raise launch.UsageError('--input_subscription', 'give exactly one of '
                            '--input_subscription or --input_topic')
  if not (args.output_topic or args.output_table or args.output):
    raise launch.UsageError('--output_topic', 'pass --output_topic, '
                            '--output_table and/or --output')
  if not (args.dead_letter_topic or args.dead_letter or args.output):
    raise launch.UsageError('--dead_letter_topic', 'pass --dead_letter_topic '
                            'and/or --dead_letter (files)')
  model.check_counts(args)
  outputs.check_bigquery_write(args)
  outputs.check_writable('--output', args.output)
  if args.dead_letter or args.output:
    outputs.check_writable('--dead_letter' if args.dead_letter else '--output',
                           outputs.dead_letter_prefix(args))
  for flag in ('prediction_log', 'model_events'):
    outputs.check_writable(f'--{flag}', getattr(args, flag))
  for flag in ('file_window', 'max_batch_wait_ms'):
    if getattr(args, flag) <= 0:
      raise launch.UsageError(f'--{flag}', 'must be positive')
  if args.dedup_window < 0:
    raise launch.UsageError('--dedup_window', 'must not be negative')
  if args.key_attribute and args.attach_keys != keys.FROM_FIELD:
    raise launch.UsageError('--key_attribute', 'the key comes from the '
                            'attribute; drop --attach_keys')
  if args.watch_models:
    if not (args.model_events_topic or args.model_events):
      raise launch.UsageError('--watch_models', 'pass --model_events_topic '
                              'and/or --model_events: every promotion and '
                              'rejection is recorded')
  else:
    for name in ('model_events_topic', 'model_events', 'labels_subscription'):
      if getattr(args, name):
        raise launch.UsageError(f'--{name}', 'only used with --watch_models')
  if not args.labels_subscription:
    defaults = build_parser()
    for name in ('label_set', 'min_labelled', 'max_accuracy_drop',
                 'label_field', 'positive_label', 'negative_label'):
      if getattr(args, name) != defaults.get_default(name):
        raise launch.UsageError(f'--{name}',
                                'only used with --labels_subscription')
  elif args.min_labelled > args.shadow_min_examples:
    raise launch.UsageError('--min_labelled', 'must be at most '
                            '--shadow_min_examples: only the messages the '
                            'gate counts can be labelled')


class Job:
  """The job's resolved configuration: every flag checked, once, before
  anything runs."""

  def __init__(self, args, options):
    self.args = args
    _check_flags(args)
    _check_cloud(args, options)
    self.signature = model.read_signature(args.model_dir, args.signature)
    self.feature_map = model.feature_map(args.feature_map, self.signature)
    self.handler = model.handler(
        args, self.signature, self.feature_map,
        max_batch_duration_secs=args.max_batch_wait_ms / 1000)
    self.passthrough = split_list(args.passthrough_fields)
    self.log_model = model.model_name(args)
    self.input_fields = {name: self.feature_map.get(name, name)
                         for name in self.signature.inputs}
    self.shape = prediction.shape(self.signature.outputs, self.passthrough)
    with launch.flag_names():
      self.rules = MessageRules(
          keys.KeyRule(args.key_field, args.attach_keys),
          self.signature.inputs, self.feature_map,
          key_attribute=args.key_attribute,
          timestamp_field=args.timestamp_field,
          max_text_bytes=args.max_text_bytes)
    self.dedup = None
    if args.dedup_window:
      self.dedup = DropRepeatedKeys(args.dedup_window,
                                    local_runner.dedup_shards(options))
    self.gate = None
    if args.watch_models:
      from models.runtime import signatures as sigs
      if (args.decision_output is not None
          and args.decision_output not in self.signature.outputs):
        raise launch.UsageError(
            '--decision_output', f'signature {self.signature.name!r} has no '
            f'output {args.decision_output!r}; it has '
            f'{sorted(self.signature.outputs)}')
      with launch.flag_names():
        rule = GateRule(args.shadow_min_examples, args.min_agreement,
                        args.max_error_rate_increase, args.max_latency_ratio,
                        args.decision_output, args.decision_threshold,
                        args.min_labelled, args.max_accuracy_drop)
        labels = None
        if args.labels_subscription:
          labels = LabelConfig(args.label_field, args.positive_label,
                               args.negative_label,
                               tuple(split_list(args.label_set)))
        self.gate = GateConfig(
            args.watch_models, rule, self.signature,
            args.model_name or sigs.default_model_name(args.model_dir),
            args.watch_interval, labels=labels)

  def predict(self, labels=None):
    """The inference step: gated when versions are watched (`labels`: the
    (key, class) PCollection with --labels_subscription)."""
    if self.gate is None:
      return PredictStream(self.handler, self.passthrough, self.log_model,
                           self.input_fields)
    return GatedPredictStream(
        self.handler, self.gate, self.args.batch_size,
        self.args.max_batch_wait_ms / 1000, self.passthrough, self.log_model,
        self.input_fields, labels)

  def acks(self):
    """Local runs acknowledge a message once its outcome is published, when
    both kinds of outcome go to topics (pipelines/local_acks.py); otherwise
    (predictions or dead letters only in files or a table) as they are
    read. With --labels_subscription too, as they are read: the ledger holds
    every message a local read pulls until its outcome, and a label has
    none."""
    a = self.args
    if not (a.output_topic and a.dead_letter_topic) or a.labels_subscription:
      return None
    outcomes = StreamOutcomes(self.rules)
    return local_acks.AckOnOutcome(outcomes.message_keys,
                                   outcomes.outcome_key,
                                   attributes=outcomes.uses_attributes)


def _check_cloud(args, options):
  """Google Cloud problems found before anything runs."""
  gcp.check_table('--output_table', args.output_table)
  flag = gcp.first_cloud_flag([
      ('--output_table', args.output_table), ('--model_dir', args.model_dir),
      ('--watch_models', args.watch_models), ('--output', args.output),
      ('--dead_letter', args.dead_letter),
      ('--prediction_log', args.prediction_log),
      ('--model_events', args.model_events)])
  if flag:
    gcp.check_credentials(options, flag)
  if args.output_table:
    gcp.check_write_method(args.bq_write_method, options)


def _write_files(pcoll, label, prefix, args, chunks=False):
  return pcoll | label >> sinks.WriteWindowedJsonLines(
      prefix, args.file_window, chunks=chunks)


def build(p, job):
  """Adds the job to `p`; returns (predictions, dead letters, events or
  None)."""
  args = job.args
  messages = p | 'ReadPubSub' >> beam.io.ReadFromPubSub(
      subscription=args.input_subscription, topic=args.input_topic,
      with_attributes=bool(args.key_attribute))
  parsed = messages | 'Parse messages' >> ParseMessages(job.rules)
  keyed, dead = parsed.main, [parsed.dead_letter]
  if job.dedup is not None:
    deduped = keyed | 'Drop repeated keys' >> job.dedup
    keyed = deduped.main
    dead.append(deduped.dead_letter)
  labels = None
  if args.labels_subscription:
    labels = (p
              | 'ReadLabels' >> beam.io.ReadFromPubSub(
                  subscription=args.labels_subscription)
              | 'Parse labels' >> ParseLabels(job.gate.labels))
  out = keyed | 'Predict' >> job.predict(labels)
  predictions = out['predictions']
  dead.append(out['dead_letter'])
  if args.output_topic:
    _ = predictions | 'Publish predictions' >> pubsub.WriteJson(
        args.output_topic)
  if args.output:
    _ = _write_files(predictions, 'Write predictions', args.output, args)
  if args.output_table:
    dead.append(predictions
                | 'Table rows' >> beam.Map(prediction.stringify_passthrough,
                                           job.passthrough)
                | 'Write predictions table' >> bigquery.WriteTable(
                    args.output_table, job.shape, args.bq_write_method,
                    args.bq_insert_retries))
  dead_letters = dead | 'All dead letters' >> beam.Flatten()
  if args.dead_letter_topic:
    _ = dead_letters | 'Publish dead letters' >> pubsub.WriteJson(
        args.dead_letter_topic)
  if args.dead_letter or args.output:
    _ = dead_letters | 'Write dead letters' >> sinks.WriteDeadLetters(
        outputs.dead_letter_prefix(args), args.file_window)
  if args.prediction_log or args.prediction_log_topic:
    rows = out['log'] | 'Prediction log rows' >> PredictionLogRows(
        args.log_sample_rate)
    if args.prediction_log:
      _ = _write_files(rows, 'Write prediction log', args.prediction_log,
                       args, chunks=True)
    if args.prediction_log_topic:
      _ = (rows
           | 'Log records' >> Unchunk()
           | 'Publish prediction log' >> pubsub.WriteJson(
               args.prediction_log_topic))
  events = out.get('events')
  if events is not None:
    if args.model_events_topic:
      _ = events | 'Publish model events' >> pubsub.WriteJson(
          args.model_events_topic)
    if args.model_events:
      _ = _write_files(events, 'Write model events', args.model_events, args)
  return predictions, dead_letters, events


def run(argv=None, wait=True):
  """Builds and runs the job. With wait=True blocks until the job ends (on
  Dataflow, returns once submitted, as the runner does); with wait=False
  returns the PipelineResult, for a caller (a test, a benchmark) to cancel."""
  args, beam_args = launch.parse_args(build_parser(), argv)
  options = flags.pipeline_options(beam_args, args, FLAGS)
  options.view_as(StandardOptions).streaming = True
  local_runner.pick_runner(options)
  job = Job(args, options)
  p = beam.Pipeline(options=options)
  build(p, job)
  local_runner.speed_up(p, args.local_fast_pubsub, acks=job.acks())
  result = progress.run(p)
  if not wait:
    return result
  result.wait_until_finish()
  return 0


def main(argv=None):
  """The `rs-stream-predict` command: run() with one-line usage errors
  (exit 2)."""
  return launch.main(run, argv)


if __name__ == '__main__':
  sys.exit(main())
