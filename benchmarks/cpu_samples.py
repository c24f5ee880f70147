"""Where a multi-threaded job's CPU goes: every thread's Python stack sampled
at an interval and weighted by the CPU that thread used since the last
sample (Linux /proc per-thread times), so threads waiting on a lock, a queue
or a gRPC call weigh nothing. Threads Python does not know (TensorFlow's
and gRPC's own) are summed by their name, without stacks.

cProfile sees only the thread that enabled it, and the DirectRunner does its
work on executor threads; py-spy is not in the environment. Used by
`benchmarks.stream_predict --profile`.

  with CpuSamples() as samples:
    ...
  print(samples.report())
"""
import collections
import os
import sys
import threading
import time

INTERVAL_S = 0.005
ALL_THREADS_EVERY_S = 0.25
_TICK_S = 1.0 / os.sysconf('SC_CLK_TCK')


def _thread_cpu_ticks(native_id):
  """utime + stime of one thread of this process, in clock ticks (0 once
  the thread is gone)."""
  try:
    with open(f'/proc/self/task/{native_id}/stat', encoding='ascii') as f:
      fields = f.read().rpartition(')')[2].split()
  except OSError:
    return 0
  return int(fields[11]) + int(fields[12])


def _all_threads():
  """{thread id: (name, CPU ticks)} of every thread of this process."""
  out = {}
  for tid in os.listdir('/proc/self/task'):
    try:
      with open(f'/proc/self/task/{tid}/stat', encoding='ascii') as f:
        head, _, tail = f.read().rpartition(')')
    except OSError:
      continue
    fields = tail.split()
    out[int(tid)] = (head.partition('(')[2],
                     int(fields[11]) + int(fields[12]))
  return out


def _frames(frame):
  """(file:function, ...) of a stack, outermost first; a DirectRunner
  bundle's frame is followed by `step:<its transform's label>`."""
  out = []
  while frame is not None:
    code = frame.f_code
    if code.co_name == 'attempt_call' and 'self' in frame.f_locals:
      applied = getattr(frame.f_locals['self'], '_applied_ptransform', None)
      out.append(f'step:{getattr(applied, "full_label", "?")}')
    out.append(f'{os.path.basename(code.co_filename)}:{code.co_name}')
    frame = frame.f_back
  out.reverse()
  return tuple(out)


class CpuSamples:
  """Samples every thread but its own while entered; report() sums the CPU
  seconds by function (inclusive: a function counts once per sample it is
  anywhere on the stack) and by leaf (self)."""

  def __init__(self, interval_s=INTERVAL_S):
    self._interval_s = interval_s
    self._stop = threading.Event()
    self._thread = None
    self.samples = []  # (time.time(), thread kind, stack, CPU ticks)
    self.snapshots = []  # (time.time(), _all_threads())

  def __enter__(self):
    self._thread = threading.Thread(target=self._run, name='cpu-samples',
                                    daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.snapshots.append((time.time(), _all_threads()))

  def _run(self):
    me = threading.get_ident()
    last = {}
    snapshot_at = 0.0
    while not self._stop.wait(self._interval_s):
      now = time.time()
      if now - snapshot_at >= ALL_THREADS_EVERY_S:
        self.snapshots.append((now, _all_threads()))
        snapshot_at = now
      threads = {t.ident: t for t in threading.enumerate()}
      for ident, frame in sys._current_frames().items():  # pylint: disable=protected-access
        thread = threads.get(ident)
        if ident == me or thread is None or thread.native_id is None:
          continue
        ticks = _thread_cpu_ticks(thread.native_id)
        used = ticks - last.get(ident, ticks)
        last[ident] = ticks
        self.samples.append((now, _thread_kind(thread.name), _frames(frame),
                             used))

  def report(self, since=0.0, top=40, wall_of=()):
    """Text: the CPU seconds from time.time() `since` on, by thread (every
    thread of the process), by function inclusive and by leaf (Python
    threads); for each name in `wall_of`, where the threads of that name
    spent their wall time."""
    first = next((s for s in self.snapshots if s[0] >= since),
                 self.snapshots[-1])
    latest = {}  # a thread's last snapshot: threads end (the runner's)
    for at, threads in self.snapshots:
      if at >= first[0]:
        latest.update(threads)
    last = self.snapshots[-1]
    per_name = collections.Counter()
    for tid, (name, ticks) in latest.items():
      per_name[name] += ticks - first[1].get(tid, (name, 0))[1]
    everything = sum(per_name.values()) or 1
    lines = [f'process CPU {everything * _TICK_S:.2f} s over '
             f'{last[0] - first[0]:.1f} s wall, by thread name:']
    lines += [f'  {n * _TICK_S:7.2f} s {100 * n / everything:5.1f}%  {name}'
              for name, n in per_name.most_common(15) if n]
    by_thread = collections.Counter()
    inclusive, leaf = collections.Counter(), collections.Counter()
    for at, kind, stack, ticks in self.samples:
      if at < first[0] or not ticks:
        continue
      by_thread[kind] += ticks
      for name in set(stack):
        inclusive[name] += ticks
      leaf[stack[-1]] += ticks
    total = sum(by_thread.values()) or 1
    lines.append(f'Python threads: {total * _TICK_S:.2f} s (% of these)')
    lines += [f'  {n * _TICK_S:7.2f} s {100 * n / total:5.1f}%  {name}'
              for name, n in by_thread.most_common()]
    steps = collections.Counter(
        {k: v for k, v in inclusive.items() if k.startswith('step:')})
    lines.append('by DirectRunner step (bundles, timers):')
    lines += [f'  {n * _TICK_S:7.2f} s {100 * n / total:5.1f}%  {name[5:]}'
              for name, n in steps.most_common()]
    for title, counts in (('inclusive', inclusive), ('self', leaf)):
      lines.append(f'by function, {title}:')
      lines += [f'  {n * _TICK_S:7.2f} s {100 * n / total:5.1f}%  {name}'
                for name, n in counts.most_common(top)]
    for kind in wall_of:
      lines += self._wall(first[0], kind, top)
    return '\n'.join(lines)

  def _wall(self, since, kind, top):
    """Share of the samples (CPU or not) of the threads named `kind` in
    which each function was on the stack: where that thread waits too."""
    inclusive = collections.Counter()
    count = 0
    for at, name, stack, _ in self.samples:
      if at >= since and kind in name:
        count += 1
        for function in set(stack):
          inclusive[function] += 1
    lines = [f'wall time of threads named {kind!r} ({count} samples), by '
             'function, inclusive:']
    lines += [f'  {100 * n / (count or 1):5.1f}%  {name}'
              for name, n in inclusive.most_common(top)]
    return lines


def _thread_kind(name):
  """A thread's name without its number (pools name them name_N)."""
  return name.rstrip('0123456789').rstrip('_-')
