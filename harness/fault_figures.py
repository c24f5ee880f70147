"""The figures of the fault runs, for docs/reliability.md.

Fault tests call `record(fault, figures)` with what one run let in and out;
with FAULT_FIGURES=PATH in the environment (`make faults` sets it) each call
appends one JSON line to PATH, otherwise nothing is written. `python -m
harness.fault_figures PATH` sums the runs per fault into the table the doc
shows: runs, records or messages in, out, dead-lettered, lost, duplicates.
"""
import collections
import dataclasses
import json
import os
import sys

VARIABLE = 'FAULT_FIGURES'
COLUMNS = ('inputs', 'outputs', 'dead_lettered', 'lost', 'duplicates')


def record(fault, figures):
  """Appends one run of `fault`; `figures` is a dict or a dataclass with
  (some of) COLUMNS, and anything else worth keeping."""
  path = os.environ.get(VARIABLE)
  if not path:
    return
  if dataclasses.is_dataclass(figures):
    figures = dataclasses.asdict(figures)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps({'fault': fault, **figures}, sort_keys=True) + '\n')


def table(lines):
  """The markdown table of the recorded runs, one row per fault."""
  runs = collections.OrderedDict()
  for line in lines:
    row = json.loads(line)
    totals = runs.setdefault(row['fault'], collections.Counter())
    totals['runs'] += 1
    for column in COLUMNS:
      totals[column] += row.get(column, 0)
  out = ['| fault | runs | in | out | dead-lettered | lost | duplicates |',
         '|---|---|---|---|---|---|---|']
  for fault, t in runs.items():
    out.append(f'| {fault} | {t["runs"]} | ' + ' | '.join(
        str(t[c]) for c in COLUMNS) + ' |')
  return '\n'.join(out)


def main(argv):
  with open(argv[0], encoding='utf-8') as f:
    print(table([line for line in f if line.strip()]))


if __name__ == '__main__':
  main(sys.argv[1:])
