"""The report's drift section: each statistic's distance from the baseline
per window, one plot per model, and the table of the latest window.

Built, like the rest of the report, from the written drift records. The
plotted measure is PSI where present (the usual alerting measure), else the
first one recorded.
"""
import html

PLOTTED = ('psi', 'js', 'ks')


def _series(records):
  """{(version, slice, statistic): [(window start, value)]} of one measure."""
  measures = {r['metric'] for r in records}
  measure = next((m for m in PLOTTED if m in measures), None)
  series = {}
  for r in records:
    if r['metric'] == measure:
      series.setdefault((r['model_version'], r['slice'], r['feature']),
                        []).append((r['window_start'], r['value']))
  return measure, series


def drift_png(plt, save, model, records):
  """PSI (or the measure present) of every statistic per window; fired
  windows marked. Returns the PNG name, or None without records."""
  measure, series = _series(records)
  if not series:
    return None
  windows = sorted({w for points in series.values() for w, _ in points})
  fired = {(r['model_version'], r['slice'], r['feature'], r['window_start'])
           for r in records if r['alert'] and r['metric'] == measure}
  fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(windows) + 3), 3.6))
  for (version, slice_name, feature), points in sorted(series.items()):
    points.sort()
    xs = [windows.index(w) for w, _ in points]
    label = feature if slice_name == 'all' else f'{feature} [{slice_name}]'
    ax.plot(xs, [v for _, v in points], marker='o', ms=3,
            label=f'{version}: {label}')
    alarms = [(windows.index(w), v) for w, v in points
              if (version, slice_name, feature, w) in fired]
    if alarms:
      ax.scatter(*zip(*alarms), s=80, facecolors='none', edgecolors='red',
                 zorder=3)
  thresholds = sorted({r['threshold'] for r in records
                       if r['metric'] == measure and r['threshold']})
  for t in thresholds:
    ax.axhline(t, color='red', lw=0.8, ls='--')
  ax.set_ylabel(measure)
  ax.set_title(f'{model}: drift from the baseline per window '
               '(red circles: alert)')
  ax.set_xticks(range(len(windows)), [w[:10] for w in windows], rotation=45,
                ha='right', fontsize=8)
  ax.grid(alpha=0.3)
  ax.legend(loc='upper left', fontsize=7)
  name = save(fig, f'drift_{model}.png')
  plt.close(fig)
  return name


def drift_html(records, images, table):
  """The drift section: a plot per model and the latest window's figures."""
  if not records:
    return []
  parts = ['<h2>Drift from the baseline</h2>']
  for model in sorted({r['model'] for r in records}):
    image = images.get(('drift', model))
    if image:
      parts.append(f'<img src="{html.escape(image)}" alt="drift over time">')
  latest = max(r['window_start'] for r in records)
  rows = sorted((r for r in records if r['window_start'] == latest),
                key=lambda r: (r['model'], r['model_version'], r['slice'],
                               r['feature'], r['metric']))
  parts.append(f'<h3>Window starting {html.escape(latest)}</h3>')
  parts.append(table(
      ['model', 'version', 'slice', 'statistic', 'measure', 'value',
       'threshold', 'alert', 'rows'],
      [(r['model'], r['model_version'], r['slice'], r['feature'],
        r['metric'], r['value'], r['threshold'],
        'ALERT' if r['alert'] else '', r['count']) for r in rows]))
  return parts
