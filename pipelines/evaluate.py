"""Continuous evaluation: joins a prediction log with late ground truth and
reports metrics by model version, time slice and key segment, with alerts.

  python -m pipelines.evaluate \
      --predictions 'out/prediction_log*.jsonl' \
      --ground_truth data/demo/ground_truth.jsonl \
      --prediction_field positive_review_probability \
      --output out/evaluation --alert 'macro_f1<0.80'

Writes under --output: slices.jsonl (one record per slice), comparisons.jsonl
(version deltas on shared keys), alerts.jsonl, dead_letter.jsonl, with a
baseline (--baseline or --baseline_window) drift.jsonl, summary.json and
report.html with PNG plots. Exit code 3 with
--fail_on_alert when any alert fired, so a scheduler can start retraining.
"""
import datetime
import json
import sys

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from common import feature_stats
from common.records import evaluation as evaluation_records
from pipelines import evaluation_stream
from pipelines import flags
from pipelines import gcp
from pipelines import inputs
from pipelines import launch
from pipelines import local_runner
from pipelines import outputs
from pipelines import progress
from pipelines import summary
from pipelines.flags import Flag
from pipelines.flags import split_list
from transforms.evaluation.alerts import METRICS_NAMESPACE as ALERTS_NAMESPACE
from transforms.evaluation.alerts import parse_drift_rule
from transforms.evaluation.alerts import parse_rule
from transforms.evaluation.config import EvaluationConfig
from transforms.evaluation.config import TIME_SLICES
from transforms.evaluation.config import parse_window
from transforms.evaluation.config import parse_window_spec
from transforms.evaluation.config import to_utc
from transforms.evaluation.evaluate import Evaluate
from transforms.evaluation.rows import METRICS_NAMESPACE
from transforms.evaluation.rows import check_classes
from transforms.io import bigquery
from transforms.io import pubsub
from transforms.io import sinks

EXIT_ALERT = 3
OUTPUTS = ('slices', 'comparisons', 'alerts', 'dead_letters', 'drift')
_FILE_NAMES = {'slices': 'slices', 'comparisons': 'comparisons',
               'alerts': 'alerts', 'dead_letters': 'dead_letter',
               'drift': 'drift'}
_MAX_PRINTED_ALERTS = 20
FLAGS = (
    Flag('predictions', template_type='GCS_READ_FILE',
         help='Prediction-log files (JSON lines; comma-separated file '
         'patterns, local or gs://). Rows of the prediction log (key, model, '
         'model_version, time, raw_data, raw_prediction) or batch_predict '
         'records (key, model_version, predictions, predicted_at). Required.'),
    Flag('ground_truth', template_type='GCS_READ_FILE',
         help='Ground-truth files (JSON lines, comma-separated patterns): '
         '{"key", <label_field>, "labeled_at"}; the latest label of a key '
         'wins. Required.'),
    Flag('output', template_type='GCS_WRITE_FOLDER',
         help='Folder (local or gs://) for slices.jsonl, comparisons.jsonl, '
         'alerts.jsonl, dead_letter.jsonl, drift.jsonl (with a baseline), '
         'summary.json and report.html. '
         'Required.'),
    Flag('predictions_table',
         help='Instead of --predictions: a BigQuery table, '
         'PROJECT:DATASET.TABLE, holding the prediction log or batch_predict '
         'predictions (same fields as the files).'),
    Flag('ground_truth_table',
         help='Instead of --ground_truth: a BigQuery table, '
         'PROJECT:DATASET.TABLE, of {key, <label_field>, labeled_at} rows.'),
    Flag('metrics_table',
         help='Also append one row per slice to this BigQuery table, '
         'PROJECT:DATASET.TABLE (created when absent, partitioned by day on '
         'as_of). Written with load jobs: needs a gs:// --temp_location.'),
    Flag('prediction_field',
         help='The model output to evaluate (e.g. positive_review_probability '
         'or source). A number in [0, 1] is a binary positive-class '
         'probability, a string a class label. Default: the only output.'),
    Flag('threshold', type=float, default=0.5,
         help='Binary models: probability >= threshold predicts '
         '--positive_label, else --negative_label.'),
) + inputs.LABELS + (
    Flag('time_slices', default=','.join(TIME_SLICES),
         help='Calendar slices (UTC), comma-separated from: '
         f'{", ".join(TIME_SLICES)}.'),
    Flag('windows', default='7d,30d',
         help='Trailing windows ending at --as_of, comma-separated, units '
         's, m, h, d, w (e.g. 24h,7d,4w); empty for none.'),
    Flag('as_of',
         help='End of the trailing windows, ISO-8601 (UTC if no offset). '
         'Default: now.'),
    Flag('key_segments', default='',
         help='Names of the parts of a key, in order (e.g. age,sex,id for '
         'keys like 35-F-34324323), to slice metrics by client segment.'),
    Flag('key_separator', default='-',
         help='What separates the parts of a key named by --key_segments.'),
    Flag('segment_by',
         help='The key segments to slice by (comma-separated). Default: '
         'every --key_segments name except "id".'),
    Flag('alert', repeat=True, default=[],
         help='An alert rule, repeatable: METRIC<VALUE (e.g. macro_f1<0.80, '
         'operators < <= > >=), METRIC[LABEL]<VALUE for a class (e.g. '
         'recall[positive]<0.7), METRIC drop>VALUE for a drop versus the '
         'previous calendar period, or METRIC drop>VALUE vs VERSION (or vs '
         'previous): a gate of each other version of the model against that '
         'one, whose every decision (pass or fail) is recorded. Checked on '
         'every slice.'),
    Flag('alert_min_labelled', type=int, default=1,
         help='Label-based alert rules skip slices with fewer labelled '
         'predictions (counted as not evaluable).'),
    Flag('fail_on_alert', switch=True,
         help=f'Exit with code {EXIT_ALERT} when any alert fired (a gate '
         'that failed included).'),
    Flag('alert_topic', template_type='PUBSUB_TOPIC',
         help='Also publish every alert record (drift alerts and gate '
         'decisions included) as a JSON message to this Pub/Sub topic, '
         'projects/P/topics/T, for a retraining launch to subscribe to.'),
    Flag('baseline', template_type='GCS_READ_FILE',
         help='Drift: a baseline_stats.json (python -m models.baseline_stats '
         'writes one next to a model version) that every --window of the '
         'log is compared with, labelled or not. Or --baseline_window.'),
    Flag('baseline_window',
         help='Drift: instead of --baseline, a reference window of the log '
         'itself, START/END in ISO-8601 (UTC if no offset), START <= time '
         '< END.'),
    Flag('window', default='1d',
         help='Drift (and, streaming, metrics): the windows (UTC, aligned on '
         'the epoch) the log is cut into, units s, m, h, d, w: fixed (e.g. '
         '1d, 7d) or sliding, SIZE/PERIOD (e.g. 7d/1d: 7 days, one '
         'starting every day).'),
    Flag('drift', repeat=True, default=[],
         help='A drift rule, repeatable: MEASURE>VALUE for every statistic '
         '(e.g. psi>0.2; measures psi, js, ks) or STATISTIC:MEASURE>VALUE '
         'for one (e.g. reviews_chars:js>0.1), which wins over the general '
         'rule. A firing rule is a drift record with alert=true and an alert '
         'record.'),
    Flag('drift_table',
         help='Also append the drift records to this BigQuery table, '
         'PROJECT:DATASET.TABLE (created when absent, partitioned by day on '
         'window_start). Written with load jobs (streaming: streaming '
         'inserts): needs a gs:// --temp_location.'),
) + evaluation_stream.STREAM
Options = flags.options_class('Evaluate', FLAGS)


def build_parser():
  """The evaluation flags, from FLAGS: --help, validation, README and the
  Flex Template metadata derive from it. Unrecognised flags are Beam
  pipeline options."""
  return flags.parser('python -m pipelines.evaluate',
                      __doc__.split('\n\n')[0], FLAGS)


def _names(text):
  return tuple(split_list(text))


def _check_batch_inputs(options):
  for flag in ('predictions', 'ground_truth'):
    files, table = getattr(options, flag), getattr(options, f'{flag}_table')
    if not files and not table:
      raise launch.UsageError(f'--{flag}', f'is required (or --{flag}_table)')
    if files and table:
      raise launch.UsageError(f'--{flag}', f'give --{flag} or --{flag}_table, '
                              'not both')
    inputs.check_patterns(inputs.patterns_of(files), f'--{flag}')
  if not options.output:
    raise launch.UsageError('--output', 'is required')
  outputs.check_writable('--output', options.output, folder=True)


def validate(options):
  """Checks the flags; returns the EvaluationConfig or raises UsageError."""
  if evaluation_stream.is_streaming(options):
    evaluation_stream.check(options)
  else:
    _check_batch_inputs(options)
  evaluation_stream.check_topic('--alert_topic', options.alert_topic)
  return EvaluationConfig(
      prediction_field=options.prediction_field,
      label_field=options.label_field, **_label_settings(options),
      **_slice_settings(options), **_segment_settings(options),
      **_alert_settings(options), **_drift_settings(options))


def _label_settings(options):
  """The EvaluationConfig fields of the classes, from the label flags."""
  if not 0.0 <= options.threshold <= 1.0:
    raise launch.UsageError('--threshold', 'must be in [0, 1]')
  label_set = _names(options.label_set)
  with launch.flag_names():
    check_classes(options.positive_label, options.negative_label, label_set)
  return {'threshold': options.threshold,
          'positive_label': options.positive_label,
          'negative_label': options.negative_label, 'label_set': label_set}


def _slice_settings(options):
  """The EvaluationConfig fields of calendar slices and trailing windows."""
  time_slices = _names(options.time_slices)
  unknown = sorted(set(time_slices) - set(TIME_SLICES))
  if unknown:
    raise launch.UsageError(
        '--time_slices', f'unknown {unknown}; choose from {TIME_SLICES}')
  windows = _names(options.windows)
  for w in windows:
    if parse_window(w) is None:
      raise launch.UsageError('--windows',
                              f'{w!r} is not like 24h, 7d or 4w')
  if not time_slices and not windows:
    raise launch.UsageError('--time_slices', 'no slice at all requested')
  if options.as_of:
    try:
      as_of = datetime.datetime.fromisoformat(options.as_of)
    except ValueError:
      raise launch.UsageError('--as_of',
                              f'{options.as_of!r} is not ISO-8601') from None
  else:
    as_of = datetime.datetime.now(datetime.timezone.utc)
  return {'as_of': to_utc(as_of), 'time_slices': time_slices,
          'windows': windows}


def _segment_settings(options):
  """The EvaluationConfig fields of key segments (the fairness lens)."""
  segments = _names(options.key_segments)
  if len(set(segments)) != len(segments):
    raise launch.UsageError('--key_segments', 'names must be unique')
  if not options.key_separator:
    raise launch.UsageError('--key_separator', 'must not be empty')
  if options.segment_by is None:
    segment_by = tuple(s for s in segments if s != 'id')
  else:
    segment_by = _names(options.segment_by)
    unknown = sorted(set(segment_by) - set(segments))
    if unknown:
      raise launch.UsageError(
          '--segment_by', f'{unknown} not in --key_segments {segments}')
  return {'key_segments': segments, 'key_separator': options.key_separator,
          'segment_by': segment_by}


def _alert_settings(options):
  """The EvaluationConfig fields of the alert rules."""
  rules = []
  for text in options.alert:
    try:
      rules.append(parse_rule(text))
    except ValueError as e:
      raise launch.UsageError('--alert', str(e)) from None
  if options.alert_min_labelled < 0:
    raise launch.UsageError('--alert_min_labelled', 'must be >= 0')
  return {'alert_rules': tuple(rules),
          'alert_min_labelled': options.alert_min_labelled}


def _iso_time(flag, text):
  try:
    return to_utc(datetime.datetime.fromisoformat(text.strip()))
  except ValueError:
    raise launch.UsageError(flag, f'{text!r} is not ISO-8601') from None


def read_baseline(path):
  """The baseline statistics file at `path` (local or gs://), checked."""
  if not FileSystems.exists(path):
    raise launch.UsageError('--baseline', f'{path} does not exist')
  try:
    with FileSystems.open(path) as f:
      return feature_stats.check_baseline(json.loads(f.read()))
  except ValueError as e:
    raise launch.UsageError('--baseline', f'{path}: {e}') from None


def _drift_settings(options):
  """The EvaluationConfig fields of drift, from the drift flags."""
  if options.baseline and options.baseline_window:
    raise launch.UsageError('--baseline_window',
                            'give --baseline or --baseline_window, not both')
  if parse_window_spec(options.window) is None:
    raise launch.UsageError(
        '--window', f'{options.window!r} is not like 1d or 7d, or 7d/1d '
        '(sliding: SIZE/PERIOD, the period at most the size)')
  rules = []
  for text in options.drift:
    try:
      rules.append(parse_drift_rule(text))
    except ValueError as e:
      raise launch.UsageError('--drift', str(e)) from None
  window = None
  if options.baseline_window:
    start, sep, end = options.baseline_window.partition('/')
    if not sep:
      raise launch.UsageError('--baseline_window', 'is START/END')
    window = (_iso_time('--baseline_window', start).timestamp(),
              _iso_time('--baseline_window', end).timestamp())
    if window[0] >= window[1]:
      raise launch.UsageError('--baseline_window', 'START must be before END')
  baseline = read_baseline(options.baseline) if options.baseline else None
  if (rules or options.drift_table) and baseline is None and window is None:
    raise launch.UsageError('--drift' if rules else '--drift_table',
                            'needs --baseline or --baseline_window')
  return {'baseline': baseline, 'baseline_window': window,
          'drift_window': options.window, 'drift_rules': tuple(rules)}


def _read_lines(p, label, patterns, table=None):
  """JSON lines from file patterns, or a BigQuery table's rows as lines."""
  if table:
    return (p | f'Read{label}' >> bigquery.ReadTable(table=table)).main | (
        f'{label}AsLines' >> beam.Map(bigquery.to_json_line))
  # As bytes: a line that is not UTF-8 is a dead letter (rows.py), where
  # ReadFromText's own decoding would fail the job.
  reads = [p | f'Read{label}{i}' >> beam.io.ReadFromText(
      pattern, coder=BytesCoder())
           for i, pattern in enumerate(inputs.patterns_of(patterns))]
  return reads | f'All{label}' >> beam.Flatten()


def _check_cloud(ev, options):
  """Google Cloud problems found before anything runs: table names,
  credentials, a metrics table without a gs:// staging location."""
  tables = [('--predictions_table', ev.predictions_table),
            ('--ground_truth_table', ev.ground_truth_table),
            ('--metrics_table', ev.metrics_table),
            ('--drift_table', ev.drift_table)]
  for flag, table in tables:
    gcp.check_table(flag, table)
  flag = gcp.first_cloud_flag(tables + [
      ('--predictions', ev.predictions), ('--ground_truth', ev.ground_truth),
      ('--baseline', ev.baseline), ('--output', ev.output)])
  if flag:
    gcp.check_credentials(options, flag)
  if ev.metrics_table or ev.drift_table:
    gcp.check_write_method(
        bigquery.STREAMING_INSERTS if evaluation_stream.is_streaming(ev)
        else bigquery.FILE_LOADS, options)


def _output_path(output, name):
  return f'{output.rstrip("/")}/{name}'


def read_records(output, name):
  """Reads one of the run's JSON-lines outputs back (local or gs://)."""
  path = _output_path(output, f'{_FILE_NAMES[name]}.jsonl')
  if not FileSystems.exists(path):
    return []
  with FileSystems.open(path) as f:
    return [json.loads(line) for line in f.read().decode('utf-8').splitlines()
            if line.strip()]


def _run_summary(counters):
  ev = counters.get(METRICS_NAMESPACE, {})
  rules = {}
  for name, value in counters.get(ALERTS_NAMESPACE, {}).items():
    rule, outcome = name.rsplit(' | ', 1)
    rules.setdefault(rule, {'fired': 0, 'passed': 0, 'not_evaluable': 0})
    rules[rule][outcome] = value
  return {
      'counts': dict(sorted(ev.items())),
      'dead_letters_by_reason': summary.dead_letters_by_reason(counters),
      'alert_rules': rules,
  }


def _print_summary(run_summary, slices, alerts, output):
  rows = [(name, value) for name, value in run_summary['counts'].items()]
  rows.append(('dead letters by reason', run_summary['dead_letters_by_reason']))
  print(summary.format_summary('evaluate', rows))
  for s in sorted(slices, key=lambda s: (s['model'], s['model_version'])):
    if s['time_slice'] == 'all' and s['segment_name'] is None:
      fmt = lambda v: 'n/a' if v is None else f'{v:.4f}'
      print(f'model {s["model"]} version {s["model_version"]}: '
            f'accuracy {fmt(s["accuracy"])}  macro F1 {fmt(s["macro_f1"])}  '
            f'({s["labelled"]:,} labelled of {s["count"]:,} predictions)'
            + (f'  ECE {fmt(s["ece"])}  Brier {fmt(s["brier_score"])}'
               if s.get('ece') is not None else ''))
  for rule, outcome in run_summary['alert_rules'].items():
    print(f'alert rule {rule!r}: {outcome["fired"]} fired, '
          f'{outcome["passed"]} passed, '
          f'{outcome["not_evaluable"]} not evaluable')
  for a in alerts[:_MAX_PRINTED_ALERTS]:
    head = (f'GATE {a["decision"]}' if a['kind'] == 'gate' else 'ALERT')
    print(f'{head} {a["model"]} {a["model_version"]} [{a["slice"]}] '
          f'{a["rule"]}: {a["metric"]}={a["value"]:.4f}'
          + (f' (drop {a["drop"]:.4f} from {a["previous_period"]})'
             if a['kind'] == 'drop' else '')
          + (f' ({a["baseline_version"]}: {a["baseline_value"]:.4f}, drop '
             f'{a["drop"]:.4f})' if a['kind'] == 'gate' else ''))
  if len(alerts) > _MAX_PRINTED_ALERTS:
    print(f'... {len(alerts) - _MAX_PRINTED_ALERTS} more alerts in '
          f'{_output_path(output, "alerts.jsonl")}')


def _run_streaming(ev, config, options, wait):
  """The streaming job (pipelines/evaluation_stream.py): runs until
  cancelled; with wait=False returns the PipelineResult (for tests)."""
  options.view_as(StandardOptions).streaming = True
  local_runner.pick_runner(options)
  _check_cloud(ev, options)
  p = beam.Pipeline(options=options)
  evaluation_stream.build(
      p, ev, config, parse_window(ev.label_lateness),
      {'metrics': (evaluation_records.metrics_row,
                   evaluation_records.METRICS_SHAPE),
       'drift': evaluation_records.DRIFT_SHAPE})
  local_runner.speed_up(p, ev.local_fast_pubsub)
  result = progress.run(p)
  if not wait:
    return result
  result.wait_until_finish()
  return 0


def run(argv=None, wait=True):
  """Builds and runs the evaluation; returns the process exit code (a
  streaming run with wait=False: its PipelineResult)."""
  ev, beam_args = launch.parse_args(build_parser(), argv)
  config = validate(ev)
  options = flags.pipeline_options(beam_args, ev, FLAGS)
  if evaluation_stream.is_streaming(ev):
    return _run_streaming(ev, config, options, wait)
  options = local_runner.pick_runner(options)
  _check_cloud(ev, options)

  p = beam.Pipeline(options=options)
  results = (
      _read_lines(p, 'Predictions', ev.predictions, ev.predictions_table),
      _read_lines(p, 'GroundTruth', ev.ground_truth, ev.ground_truth_table),
  ) | 'Evaluate' >> Evaluate(config)
  dead_letters = results['dead_letters']
  if ev.metrics_table:
    metrics_dead = (
        results['slices']
        | 'MetricsRows' >> beam.Map(
            evaluation_records.metrics_row, config.as_of.isoformat())
        | 'WriteMetricsTable' >> bigquery.WriteTable(
            ev.metrics_table, evaluation_records.METRICS_SHAPE,
            bigquery.FILE_LOADS))
    dead_letters = ((dead_letters, metrics_dead)
                    | 'AllDeadLetters' >> beam.Flatten())
  if ev.alert_topic:
    _ = results['alerts'] | 'PublishAlerts' >> pubsub.WriteJson(
        ev.alert_topic)
  if ev.drift_table:
    drift_dead = results['drift'] | 'WriteDriftTable' >> bigquery.WriteTable(
        ev.drift_table, evaluation_records.DRIFT_SHAPE, bigquery.FILE_LOADS)
    dead_letters = ((dead_letters, drift_dead)
                    | 'WithDriftDeadLetters' >> beam.Flatten())
  for name in OUTPUTS:
    if name not in results:
      continue
    written = dead_letters if name == 'dead_letters' else results[name]
    _ = written | f'Write{name}' >> sinks.WriteJsonLines(
        _output_path(ev.output, f'{_FILE_NAMES[name]}.jsonl'),
        single_file=True, sort_keys=True)
  result = progress.run(p)
  result.wait_until_finish()

  run_summary = _run_summary(summary.counters(result))
  run_summary['as_of'] = config.as_of.isoformat()
  with FileSystems.create(_output_path(ev.output, 'summary.json')) as f:
    f.write(json.dumps(run_summary, indent=2, sort_keys=True).encode())
  slices = read_records(ev.output, 'slices')
  alerts = read_records(ev.output, 'alerts')
  alerts.sort(key=lambda a: (a['model'], a['model_version'], a['slice'],
                             a['rule']))
  drift = read_records(ev.output, 'drift')
  from transforms.evaluation.report import write_report
  report = write_report(ev.output, slices,
                        read_records(ev.output, 'comparisons'), alerts,
                        run_summary, drift)
  _print_summary(run_summary, slices, alerts, ev.output)
  if config.drift:
    print(f'drift: {len(drift):,} records over '
          f'{len({d["window_start"] for d in drift}):,} windows of '
          f'{config.drift_window}, '
          f'{sum(d["alert"] for d in drift):,} alerts')
  print(f'report: {report}')
  if ev.fail_on_alert and any(map(evaluation_records.is_alert, alerts)):
    return EXIT_ALERT
  return 0


def main(argv=None):
  """The `rs-evaluate` command: run() with one-line usage errors (exit 2)."""
  return launch.main(run, argv)


if __name__ == '__main__':
  sys.exit(main())
