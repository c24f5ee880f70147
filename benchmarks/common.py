"""What every benchmark script shares: scratch data sets, measured child
processes, machine description, tables.

Each measured variant runs in a fresh child process, so variants cannot share
a warm model or a grown heap, and the parent can watch the child's whole
process tree (Beam's multi-process workers included) for peak memory.
"""
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SCRATCH = os.environ.get('BENCH_SCRATCH', '/tmp/resilient-serving-bench')
DEMO_JSONL = 'data/demo/inputs/jsonl/*.jsonl'


def demo_records():
  """The demo reviews as dicts, in file order."""
  records = []
  for path in sorted(glob.glob(DEMO_JSONL)):
    with open(path, encoding='utf-8') as f:
      records.extend(json.loads(line) for line in f)
  if not records:
    sys.exit(f'no demo data under {DEMO_JSONL}: run `make model` first')
  return records


def texts(pattern):
  """The `text` field of every JSON line under `pattern`, in file order:
  what the raw-loop variants hold in memory before their clock starts."""
  out = []
  for path in sorted(glob.glob(pattern)):
    with open(path, encoding='utf-8') as f:
      out.extend(json.loads(line)['text'] for line in f)
  return out


def scratch_dataset(n, num_shards=8):
  """JSONL shards of `n` demo reviews repeated with fresh keys; a file
  pattern. Written once under SCRATCH (never in the repository)."""
  folder = os.path.join(SCRATCH, f'reviews-{n}')
  pattern = os.path.join(folder, '*.jsonl')
  done = os.path.join(folder, '.complete')
  if os.path.exists(done):
    return pattern
  os.makedirs(folder, exist_ok=True)
  for old in glob.glob(pattern):
    os.remove(old)
  demo = demo_records()
  files = [open(os.path.join(folder, f'reviews-{s:05d}-of-{num_shards:05d}.jsonl'),
                'w', encoding='utf-8') for s in range(num_shards)]
  try:
    for i in range(n):
      record = demo[i % len(demo)]
      files[i % num_shards].write(json.dumps(
          {'key': f'r{i:08d}', 'text': record['text'],
           'split': record.get('split')}) + '\n')
  finally:
    for f in files:
      f.close()
  open(done, 'w').close()
  return pattern


def _tree(pid):
  """pid and all its descendants (Linux /proc)."""
  pids, i = [pid], 0
  while i < len(pids):
    for task in glob.glob(f'/proc/{pids[i]}/task/*/children'):
      try:
        with open(task) as f:
          pids.extend(int(p) for p in f.read().split())
      except OSError:
        pass
    i += 1
  return pids


def _rss_bytes(pid):
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def run_child(argv, env=None, timeout=3600):
  """Runs `python argv...`; returns the JSON object on its last stdout line
  plus `wall_s` and `peak_rss_mb` (the largest summed RSS of its process
  tree, sampled every 0.1 s)."""
  child_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **(env or {}))
  started = time.time()
  proc = subprocess.Popen([sys.executable] + list(argv), env=child_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  peak = 0
  while proc.poll() is None:
    peak = max(peak, sum(_rss_bytes(p) for p in _tree(proc.pid)))
    if time.time() - started > timeout:
      proc.kill()
      break
    time.sleep(0.1)
  out, err = proc.communicate()
  if proc.returncode != 0:
    tail = '\n'.join(err.strip().splitlines()[-15:])
    raise RuntimeError(f'{" ".join(argv)} failed ({proc.returncode}):\n{tail}')
  figures = json.loads(out.strip().splitlines()[-1])
  figures['wall_s'] = round(time.time() - started, 2)
  figures['peak_rss_mb'] = round(peak / 2**20)
  return figures


def machine():
  """One line describing where the figures were measured."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  mem_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
  return (f'{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, '
          f'Python {platform.python_version()}, load average at start {load}')


def median(values):
  return statistics.median(values) if values else None


def table(headers, rows):
  """A Markdown table (readable as plain text too)."""
  cells = [[str(h) for h in headers]] + [
      ['' if c is None else (f'{c:,.2f}' if isinstance(c, float) else str(c))
       for c in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |'
           for r in cells]
  lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
  return '\n'.join(lines)
