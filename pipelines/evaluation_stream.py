"""The streaming form of pipelines.evaluate: Pub/Sub in, Pub/Sub (and
BigQuery) out, one window of --window at a time.

  python -m pipelines.evaluate \\
      --predictions_subscription projects/P/subscriptions/log \\
      --ground_truth_subscription projects/P/subscriptions/labels \\
      --label_lateness 1d --window 1d --baseline baseline_stats.json \\
      --metrics_topic projects/P/topics/metrics --alert_topic ... \\
      --drift_topic ... --dead_letter_topic ...

The flags are pipelines.evaluate's (STREAM); the graph is
transforms/evaluation/streaming.py's EvaluateStream. A message is one JSON
row, as a line of the batch job's files. Files are not written: each
window's slice records, drift records, alerts and dead letters are
published as they are made (late panes refine a window's records).
"""
import re

import apache_beam as beam

from pipelines import launch
from pipelines import local_runner
from pipelines.flags import Flag
from transforms.evaluation.config import parse_window
from transforms.evaluation.streaming import EvaluateStream
from transforms.io import bigquery
from transforms.io import pubsub

_TOPIC = re.compile(r'projects/[^/]+/topics/[^/]+')
_SUBSCRIPTION = re.compile(r'projects/[^/]+/subscriptions/[^/]+')
STREAM = (
    Flag('predictions_subscription', template_type='PUBSUB_SUBSCRIPTION',
         help='Streaming: the Pub/Sub subscription of the prediction log '
         '(one JSON row a message, e.g. what stream_predict logs), '
         'projects/P/subscriptions/S. Makes the job a streaming one.'),
    Flag('ground_truth_subscription', template_type='PUBSUB_SUBSCRIPTION',
         help='Streaming: the subscription of the ground-truth rows.'),
    Flag('label_lateness', default='1d',
         help='Streaming: how long after its prediction (event time) a '
         'label may come (units s, m, h, d, w); a prediction without one by '
         'then counts as unlabelled, and its state is dropped.'),
    Flag('metrics_topic', template_type='PUBSUB_TOPIC',
         help='Streaming: publish each window\'s slice records (per model '
         'version, refined by late panes) to this topic. Required when '
         'streaming.'),
    Flag('drift_topic', template_type='PUBSUB_TOPIC',
         help='Streaming: publish the drift records to this topic.'),
    Flag('dead_letter_topic', template_type='PUBSUB_TOPIC',
         help='Streaming: publish the dead letters to this topic (else they '
         'are only counted).'),
    local_runner.FAST_PUBSUB,
)


def check_topic(flag, value):
  """A topic flag's value, when given, is a topic's full name."""
  if value and not _TOPIC.fullmatch(value):
    raise launch.UsageError(flag, 'is projects/PROJECT/topics/NAME')


def is_streaming(options):
  return bool(options.predictions_subscription
              or options.ground_truth_subscription)


def check(options):
  """The streaming flags' problems (UsageError); returns the lateness in
  seconds."""
  for flag in ('predictions_subscription', 'ground_truth_subscription'):
    value = getattr(options, flag)
    if not value:
      raise launch.UsageError(f'--{flag}', 'is required when streaming')
    if not _SUBSCRIPTION.fullmatch(value):
      raise launch.UsageError(f'--{flag}',
                              'is projects/PROJECT/subscriptions/NAME')
  for flag in ('predictions', 'ground_truth', 'predictions_table',
               'ground_truth_table', 'baseline_window'):
    if getattr(options, flag):
      raise launch.UsageError(f'--{flag}', 'is for batch runs, not with a '
                              'subscription')
  if not options.metrics_topic:
    raise launch.UsageError('--metrics_topic', 'is required when streaming')
  for flag in ('metrics_topic', 'drift_topic', 'dead_letter_topic'):
    check_topic(f'--{flag}', getattr(options, flag))
  lateness = parse_window(options.label_lateness)
  if lateness is None:
    raise launch.UsageError('--label_lateness',
                            f'{options.label_lateness!r} is not like 6h, 1d')
  return lateness


def build(p, ev, config, lateness_s, shapes):
  """The streaming graph on `p`; `shapes`: {'metrics': (row function,
  shape), 'drift': shape} for the BigQuery tables."""
  lines = tuple(
      p | f'Read{name}' >> beam.io.ReadFromPubSub(subscription=subscription)
      | f'{name}Lines' >> beam.Map(lambda data: data.decode('utf-8'))
      for name, subscription in (
          ('Predictions', ev.predictions_subscription),
          ('GroundTruth', ev.ground_truth_subscription)))
  out = lines | 'Evaluate' >> EvaluateStream(config, lateness_s)
  dead = [out['dead_letters']]
  _ = out['slices'] | 'PublishMetrics' >> pubsub.WriteJson(ev.metrics_topic)
  for name, topic in (('alerts', ev.alert_topic), ('drift', ev.drift_topic),
                      ('dead_letters', ev.dead_letter_topic)):
    if topic and name in out:
      _ = out[name] | f'Publish{name}' >> pubsub.WriteJson(topic)
  if ev.metrics_table:
    row, shape = shapes['metrics']
    dead.append(out['slices'] | 'MetricsRows' >> beam.Map(
        row, config.as_of.isoformat()) | 'WriteMetricsTable' >> (
            bigquery.WriteTable(ev.metrics_table, shape,
                                bigquery.STREAMING_INSERTS)))
  if ev.drift_table and 'drift' in out:
    dead.append(out['drift'] | 'WriteDriftTable' >> bigquery.WriteTable(
        ev.drift_table, shapes['drift'], bigquery.STREAMING_INSERTS))
  return out
