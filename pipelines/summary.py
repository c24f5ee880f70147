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


# What to check when every input of a run died for the same reason: the
# input is not what the flags describe (no error is raised while records
# are read one by one, so the summary is where this must show).
_ONE_REASON_HINTS = {
    'missing_key': 'check --key_field (a.b reads a nested field) or use '
                   '--attach_keys content_hash',
    'missing_feature': 'check --feature_map against the input\'s fields',
    'wrong_type': 'check --feature_map against the input\'s fields',
    'unparseable': 'check --input_format',
    'invalid_text': 'the input is not UTF-8 text',
}


def input_rows(all_counters):
  """Summary rows about how the input was read, where there is something to
  say: files that could not be read to their end, CSV header lines."""
  read = all_counters.get('read', {})
  rows = []
  if read.get('unreadable_files'):
    rows.append(('unreadable files (one dead letter each)',
                 read['unreadable_files']))
  if read.get('header_lines'):
    rows.append(('lines taken as CSV header', read['header_lines']))
  return rows


def one_reason_warning(inputs, by_reason):
  """A loud line when every input was dead-lettered for one reason, else
  None."""
  if not inputs or len(by_reason) != 1:
    return None
  ((reason, count),) = by_reason.items()
  if count < inputs:
    return None
  hint = _ONE_REASON_HINTS.get(reason, 'check the flags against the input')
  return (f'WARNING: every input was dead-lettered as {reason} ({count:,} of '
          f'{inputs:,}): {hint}')
