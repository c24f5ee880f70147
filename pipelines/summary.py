"""Reads a finished run's Beam metrics and prints the end-of-run summary.

Every stage counts what it sees in Beam metrics counters; the summary is built
from those counters (not from re-reading outputs), so it is the same numbers a
Dataflow user sees in the job's metrics panel.
"""
import collections

from apache_beam.metrics.metric import MetricsFilter

from transforms.dead_letter import METRICS_NAMESPACE as DEAD_LETTER_NAMESPACE


def counters(result):
  """Returns {namespace: {name: value}} of all counters of a finished run.

  Committed values are used where the runner reports them, else attempted.
  A run that reports no metrics (a Dataflow --dry_run) gives {}.
  """
  out = collections.defaultdict(dict)
  try:
    found = result.metrics().query(MetricsFilter())['counters']
  except NotImplementedError:
    print('(this run reports no metrics: the figures below are empty)')
    found = []
  for c in found:
    value = c.committed if c.committed is not None else c.attempted
    ns, name = c.key.metric.namespace, c.key.metric.name
    out[ns][name] = out[ns].get(name, 0) + (value or 0)
  return dict(out)


def dead_letters_by_reason(all_counters):
  """The dead-letter counts by reason, largest first."""
  by_reason = all_counters.get(DEAD_LETTER_NAMESPACE, {})
  return dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))


def format_summary(title, rows):
  """Formats (label, value) rows as an aligned block; nested dicts indent."""
  lines = [f'== {title} ==']
  width = max([len(label) for label, _ in rows] + [10])
  for label, value in rows:
    if isinstance(value, dict):
      lines.append(f'{label}' if value else f'{label:<{width}} {"none":>12}')
      for k, v in value.items():
        lines.append(f'  {k:<{width - 2}} {v:>12,}')
    elif isinstance(value, float):
      lines.append(f'{label:<{width}} {value:>12,.1f}')
    elif isinstance(value, int):
      lines.append(f'{label:<{width}} {value:>12,}')
    else:
      lines.append(f'{label:<{width}} {value}')
  return '\n'.join(lines)
