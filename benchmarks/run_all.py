"""Runs the benchmark scripts and writes benchmarks/RESULTS.md (`make bench`).

Each script prints its table and, as its last line, one JSON object with its
figures. Each script's section (date, machine, table, JSON) is kept in
benchmarks/results/NAME.md, so running a subset (`python -m benchmarks.run_all
evaluation`) refreshes only those sections; RESULTS.md is every section plus
the hand-written log of what each optimisation bought
(benchmarks/optimisations.md). Benchmarks are not tests: never run in CI.

    python -m benchmarks.run_all [SCRIPT ...]
"""
import datetime
import json
import os
import subprocess
import sys

from benchmarks import common

HERE = os.path.dirname(os.path.abspath(__file__))
SECTIONS = os.path.join(HERE, 'results')
# One script per workload, in the order they run and appear.
SCRIPTS = ('batch_inference', 'two_phase', 'moderation', 'stream_predict',
           'entity_linking', 'evaluation', 'evaluation_stream',
           'serving_latency')


def run_script(name):
  """Runs one script, echoing its output; returns (table text, figures)."""
  proc = subprocess.Popen([sys.executable, '-m', f'benchmarks.{name}'],
                          stdout=subprocess.PIPE, text=True)
  lines = []
  for line in proc.stdout:
    print(line, end='', flush=True)
    lines.append(line.rstrip('\n'))
  if proc.wait() != 0:
    raise SystemExit(f'benchmarks.{name} failed with exit code {proc.returncode}')
  markdown = [l for l in lines[:-1] if l.startswith('|')]
  table = '\n'.join(markdown) or '```\n' + '\n'.join(lines[:-1]) + '\n```'
  return table, json.loads(lines[-1])


def section(name, table, figures, started, machine):
  return (f'## {name}\n\n- date: {started.isoformat(timespec="seconds")}\n'
          f'- machine: {machine}\n\n{table}\n\n'
          f'```json\n{json.dumps(figures, indent=1)}\n```\n')


def write_results():
  parts = []
  for name in SCRIPTS:
    path = os.path.join(SECTIONS, f'{name}.md')
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        parts.append(f.read())
  with open(os.path.join(HERE, 'optimisations.md'), encoding='utf-8') as f:
    parts.append(f.read())
  with open(os.path.join(HERE, 'RESULTS.md'), 'w', encoding='utf-8') as f:
    f.write('# Benchmark results\n\n(Written by `make bench` = `python -m '
            'benchmarks.run_all`; edit benchmarks/optimisations.md, not this '
            'file.)\n\n' + '\n'.join(parts))


def main(argv=None):
  names = (argv if argv is not None else sys.argv[1:]) or SCRIPTS
  unknown = sorted(set(names) - set(SCRIPTS))
  if unknown:
    raise SystemExit(f'unknown benchmark(s) {unknown}; choose from {SCRIPTS}')
  os.makedirs(SECTIONS, exist_ok=True)
  for name in names:
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = common.machine()
    table, figures = run_script(name)
    with open(os.path.join(SECTIONS, f'{name}.md'), 'w', encoding='utf-8') as f:
      f.write(section(name, table, figures, started, machine))
    write_results()
  print(f'wrote {os.path.join(HERE, "RESULTS.md")}')


if __name__ == '__main__':
  sys.exit(main())
