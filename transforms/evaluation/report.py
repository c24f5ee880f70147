"""The human report of an evaluation run: HTML with PNG plots.

Built after the pipeline from the run's own JSON-lines outputs (the slice,
comparison and alert records), so a report can always be rebuilt from what
was written. Plots: a confusion matrix and a reliability diagram per model
version (all-time slice), metrics over time per model (the finest calendar
slice present) and, with a baseline, drift per window
(transforms/evaluation/drift_report.py).
matplotlib is imported here, lazily: the pipeline's --help stays instant.
"""
import html
import io
import re

from apache_beam.io.filesystems import FileSystems

from transforms.evaluation.drift_report import drift_html
from transforms.evaluation.drift_report import drift_png

OVER_TIME = ('accuracy', 'macro_f1', 'roc_auc')
TABLE_METRICS = ('count', 'labelled', 'label_coverage', 'accuracy',
                 'macro_f1', 'weighted_f1', 'roc_auc', 'log_loss',
                 'brier_score', 'ece')
_CALENDAR = ('day', 'week', 'month')


def _file_safe(text):
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', str(text))


def _fmt(value):
  if value is None:
    return 'n/a'
  if isinstance(value, float):
    return f'{value:.4f}'
  if isinstance(value, int):
    return f'{value:,}'
  return html.escape(str(value))


def _table(headers, rows):
  head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
  body = ''.join(
      '<tr>' + ''.join(f'<td>{_fmt(v)}</td>' for v in row) + '</tr>'
      for row in rows)
  return f'<table><tr>{head}</tr>{body}</table>'


def _save(fig, output, name):
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=110, bbox_inches='tight')
  with FileSystems.create(f'{output.rstrip("/")}/{name}') as f:
    f.write(buffer.getvalue())
  return name


def confusion_png(plt, record, output):
  """Counts, shaded by share of the true class (the row): recall at a look."""
  labels = record['confusion_matrix']['labels']
  matrix = record['confusion_matrix']['matrix']
  size = max(3.5, 0.9 * len(labels) + 2)
  fig, ax = plt.subplots(figsize=(size, size * 0.85))
  shares = [[n / max(sum(row), 1) for n in row] for row in matrix]
  ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  for i, row in enumerate(matrix):
    for j, n in enumerate(row):
      ax.text(j, i, f'{n:,}\n{shares[i][j]:.1%}', ha='center', va='center',
              color='white' if shares[i][j] > 0.6 else 'black', fontsize=10)
  ax.set_xticks(range(len(labels)), labels, rotation=30, ha='right')
  ax.set_yticks(range(len(labels)), labels)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true (ground truth)')
  ax.set_title(f'{record["model"]} {record["model_version"]}: '
               f'{record["labelled"]:,} labelled', fontsize=11)
  name = _save(fig, output, 'confusion_{}_{}.png'.format(
      _file_safe(record['model']), _file_safe(record['model_version'])))
  plt.close(fig)
  return name


def reliability_png(plt, record, output):
  """Observed share of positives against the mean predicted probability per
  bin, bars for how many rows each bin holds: a calibrated model sits on the
  diagonal."""
  bins = [b for b in record['calibration'] if b['count']]
  fig, ax = plt.subplots(figsize=(4.2, 4.2))
  ax.plot([0, 1], [0, 1], ls='--', color='grey', lw=1, label='calibrated')
  ax.plot([b['mean_predicted'] for b in bins],
          [b['fraction_positive'] for b in bins], marker='o',
          label=f'ECE {record["ece"]:.3f}, Brier {record["brier_score"]:.3f}')
  share = ax.twinx()
  total = sum(b['count'] for b in bins)
  share.bar([(b['lower'] + b['upper']) / 2 for b in bins],
            [b['count'] / total for b in bins], width=0.09, alpha=0.2,
            color='tab:blue')
  share.set_ylabel('share of rows')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel('mean predicted probability')
  ax.set_ylabel('fraction positive')
  ax.set_title(f'{record["model"]} {record["model_version"]}: reliability',
               fontsize=11)
  ax.legend(loc='upper left', fontsize=8)
  name = _save(fig, output, 'reliability_{}_{}.png'.format(
      _file_safe(record['model']), _file_safe(record['model_version'])))
  plt.close(fig)
  return name


def over_time_png(plt, model, records, output):
  """Metrics of each version over the finest calendar slice present."""
  present = {r['time_slice'] for r in records}
  time_slice = next((t for t in _CALENDAR if t in present), None)
  if time_slice is None:
    return None, None
  series = [r for r in records
            if r['time_slice'] == time_slice and r['segment_name'] is None]
  metrics = [m for m in OVER_TIME if any(r[m] is not None for r in series)]
  if not metrics:
    return None, None
  periods = sorted({r['period'] for r in series})
  fig, axes = plt.subplots(len(metrics), 1, sharex=True, squeeze=False,
                           figsize=(max(6, 0.35 * len(periods) + 3),
                                    2.4 * len(metrics) + 0.6))
  versions = sorted({r['model_version'] for r in series})
  for ax, metric in zip(axes[:, 0], metrics):
    for version in versions:
      points = sorted((periods.index(r['period']), r[metric]) for r in series
                      if r['model_version'] == version
                      and r[metric] is not None)
      if points:
        ax.plot(*zip(*points), marker='o', label=version)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(loc='best', fontsize=9)
  axes[0, 0].set_title(f'{model}: metrics per {time_slice} (UTC)')
  axes[-1, 0].set_xticks(range(len(periods)), periods, rotation=45,
                         ha='right', fontsize=8)
  name = _save(fig, output, f'over_time_{_file_safe(model)}.png')
  plt.close(fig)
  return name, time_slice


def _sorted_slices(slices, keep, key):
  return sorted((s for s in slices if keep(s)), key=key)


def _head(run_summary):
  return ['<!doctype html><html><head><meta charset="utf-8">',
          '<title>Model evaluation</title><style>',
          'body{font-family:sans-serif;margin:2em;max-width:75em}',
          'table{border-collapse:collapse;margin:0.5em 0 1.5em}',
          'td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}',
          'th{background:#f0f0f0}.alert{color:#b00}</style></head><body>',
          '<h1>Model evaluation</h1>',
          f'<p>Trailing windows end at {_fmt(run_summary.get("as_of"))}. '
          'n/a: undefined (no labels, one class only, or not a binary '
          'score).</p>']


def _alerts_html(alerts, run_summary):
  """Fired alerts, the gates' decisions (pass or fail) and each rule's
  tally."""
  gates = [a for a in alerts if a['kind'] == 'gate']
  alerts = [a for a in alerts if a.get('decision') != 'pass']
  parts = [f'<h2 class="alert">Alerts ({len(alerts)})</h2>']
  if alerts:
    parts.append(_table(
        ['model', 'version', 'slice', 'rule', 'metric', 'value',
         'threshold', 'previous'],
        [(a['model'], a['model_version'], a['slice'], a['rule'], a['metric'],
          a['value'], a['threshold'],
          a.get('previous_period') and
          f'{a["previous_period"]}: {_fmt(a["previous_value"])}'
          or a.get('baseline_version') and
          f'{a["baseline_version"]}: {_fmt(a["baseline_value"])}')
         for a in alerts]))
  if gates:
    parts.append('<h2>Gates against a baseline version</h2>')
    parts.append(_table(
        ['model', 'version', 'slice', 'rule', 'decision', 'value',
         'baseline', 'baseline value', 'drop'],
        [(a['model'], a['model_version'], a['slice'], a['rule'],
          a['decision'], a['value'], a['baseline_version'],
          a['baseline_value'], a['drop']) for a in gates]))
  rules = run_summary.get('alert_rules', {})
  if rules:
    parts.append(_table(['rule', 'fired', 'passed', 'not evaluable'],
                        [(r, o['fired'], o['passed'], o['not_evaluable'])
                         for r, o in rules.items()]))
  else:
    parts.append('<p>No alert rules were given.</p>')
  return parts


def _versions_html(overall, images):
  """All-time metrics per version, then per class with its pictures."""
  parts = ['<h2>All time, per model version</h2>',
           _table(['model', 'version'] + list(TABLE_METRICS),
                  [[s['model'], s['model_version']] +
                   [s[m] for m in TABLE_METRICS] for s in overall])]
  for s in overall:
    parts.append(f'<h3>{html.escape(s["model"])} '
                 f'{html.escape(s["model_version"])}: per class</h3>')
    parts.append(_table(['label', 'precision', 'recall', 'f1', 'support'],
                        [(c['label'], c['precision'], c['recall'], c['f1'],
                          c['support']) for c in s['per_class']]))
    image = images.get(('confusion', s['model'], s['model_version']))
    if image:
      parts.append(f'<img src="{html.escape(image)}" alt="confusion matrix">')
    image = images.get(('reliability', s['model'], s['model_version']))
    if image:
      parts.append(f'<img src="{html.escape(image)}" '
                   'alt="reliability diagram">')
  for (_, model), image in sorted(
      (k[:2], v) for k, v in images.items() if k[0] == 'over_time'):
    parts.append(f'<h2>{html.escape(model)} over time</h2>'
                 f'<img src="{html.escape(image)}" alt="metrics over time">')
  return parts


def _comparisons_html(comparisons):
  rows = []
  for c in comparisons:
    for metric, delta in c['delta'].items():
      rows.append((c['model'], f'{c["version_a"]} -> {c["version_b"]}',
                   c['keys'], metric, c['metrics_a'][metric],
                   c['metrics_b'][metric], delta))
  return ['<h2>Version comparison (keys both versions scored)</h2>',
          _table(['model', 'versions', 'keys', 'metric', 'before', 'after',
                  'delta'], rows)]


def _slices_html(title, header, column, slices):
  """A table of TABLE_METRICS per version and `column`, headed `header`."""
  return [f'<h2>{title}</h2>',
          _table(['model', 'version', header] + list(TABLE_METRICS),
                 [[s['model'], s['model_version'], s[column]] +
                  [s[m] for m in TABLE_METRICS] for s in slices])]


def _counts_html(run_summary):
  dead = run_summary.get('dead_letters_by_reason', {})
  return ['<h2>Run counts</h2>',
          _table(['count', 'value'],
                 list(run_summary.get('counts', {}).items())),
          '<h2>Dead letters by reason</h2>',
          _table(['reason', 'rows'], list(dead.items())) if dead
          else '<p>None.</p>']


def render_html(slices, comparisons, alerts, run_summary, images, drift=()):
  """The report page; `images` maps section keys to PNG file names."""
  overall = _sorted_slices(
      slices, lambda s: s['time_slice'] == 'all' and s['segment_name'] is None,
      lambda s: (s['model'], s['model_version']))
  windows = _sorted_slices(
      slices,
      lambda s: s['time_slice'] == 'window' and s['segment_name'] is None,
      lambda s: (s['model'], s['model_version'], s['period']))
  segments = _sorted_slices(
      slices, lambda s: s['segment_name'] is not None and s['time_slice'] in (
          'all', 'window'),
      lambda s: (s['model'], s['model_version'], s['time_slice'],
                 s['period'], s['segment_name'], s['segment_value']))
  parts = _head(run_summary) + _alerts_html(alerts, run_summary)
  parts += _versions_html(overall, images)
  parts += drift_html(drift, images, _table)
  if windows:
    parts += _slices_html('Trailing windows', 'window', 'period', windows)
  if comparisons:
    parts += _comparisons_html(comparisons)
  if segments:
    parts += _slices_html('Key segments', 'slice', 'slice', segments)
  parts += _counts_html(run_summary)
  parts.append('</body></html>')
  return '\n'.join(parts)


def write_report(output, slices, comparisons, alerts, run_summary,
                 drift=()):
  """Writes report.html and its PNGs under `output`; returns the HTML path."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  images = {}
  for s in slices:
    if (s['time_slice'] == 'all' and s['segment_name'] is None
        and s['labelled']):
      images[('confusion', s['model'], s['model_version'])] = confusion_png(
          plt, s, output)
      if s.get('calibration'):
        images[('reliability', s['model'], s['model_version'])] = (
            reliability_png(plt, s, output))
  for model in sorted({s['model'] for s in slices}):
    name, _ = over_time_png(
        plt, model, [s for s in slices if s['model'] == model], output)
    if name:
      images[('over_time', model)] = name
  for model in sorted({d['model'] for d in drift}):
    save = lambda fig, name: _save(fig, output, _file_safe(name))
    name = drift_png(plt, save, model,
                     [d for d in drift if d['model'] == model])
    if name:
      images[('drift', model)] = name
  path = f'{output.rstrip("/")}/report.html'
  with FileSystems.create(path) as f:
    f.write(render_html(slices, comparisons, alerts, run_summary,
                        images, drift).encode('utf-8'))
  return path
