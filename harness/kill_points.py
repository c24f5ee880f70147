"""Runs a job in a child process that kills itself (SIGKILL) at a chosen point.

A kill at a random moment mostly lands while a job starts up; the points
that matter are while it reads, while the model runs, and while the sinks
rename their shards into place. Each point is a function the job really
calls at that moment; the child counts its calls and, once call N has
returned, sends itself SIGKILL: no cleanup, no atexit, no flushing, exactly
what a preempted VM or an OOM kill does. Nothing in the job is changed.

  python -m harness.kill_points POINT N -m pipelines.batch_predict FLAGS...

  with harness.kill_points.killed_at('finalize', 1, argv) as proc: ...
"""
import importlib
import os
import runpy
import signal
import subprocess
import sys
import threading

from harness import standins

# point -> (module, attribute path) of the function counted.
POINTS = {
    # Every byte range of a JSON-lines input is split into lines here once
    # read (transforms.io.line_ranges).
    'read': ('transforms.io.line_ranges', 'split_lines'),
    # One model batch (transforms.inference.signature_handler).
    'infer': ('transforms.inference.signature_handler',
              'SignatureModelHandler.run_inference'),
    # One batch of shard renames of a file sink's finalize (Beam's
    # FileBasedSink.finalize_write; local files rename one at a time).
    'finalize': ('apache_beam.io.filesystems', 'FileSystems.rename'),
}


def install(point, after_calls):
  """Makes call number `after_calls` of `point`'s function the process's
  last: SIGKILL as soon as it returns."""
  module_name, path = POINTS[point]
  owner = importlib.import_module(module_name)
  *parents, name = path.split('.')
  for parent in parents:
    owner = getattr(owner, parent)
  original = getattr(owner, name)
  lock = threading.Lock()
  calls = [0]

  def counted(*args, **kwargs):
    result = original(*args, **kwargs)
    with lock:
      calls[0] += 1
      last = calls[0] >= after_calls
    if last:
      os.kill(os.getpid(), signal.SIGKILL)
    return result

  # A static or class method keeps its kind (FileSystems.rename is static).
  raw = vars(owner).get(name) if isinstance(owner, type) else None
  if isinstance(raw, staticmethod):
    counted = staticmethod(counted)
  setattr(owner, name, counted)


def command(point, after_calls, argv):
  """The child's command line: `argv` is `-m MODULE FLAGS...`."""
  return [sys.executable, '-m', __name__, point, str(after_calls), *argv]


def run(point, after_calls, argv, log_path, timeout_s=300):
  """Runs the job until it kills itself; returns its exit status
  (-SIGKILL when the point was reached, else the job's own status)."""
  with open(log_path, 'wb') as log:
    proc = subprocess.run(
        command(point, after_calls, argv), stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=standins.REPO, timeout=timeout_s, check=False,
        env={**os.environ, 'PYTHONPATH': str(standins.REPO)})
  return proc.returncode


def main(args):
  point, after_calls, dash_m, module, *flags = args
  if dash_m != '-m' or point not in POINTS:
    raise SystemExit(f'usage: python -m {__name__} {"|".join(POINTS)} N '
                     '-m MODULE FLAGS...')
  install(point, int(after_calls))
  sys.argv = [module, *flags]
  runpy.run_module(module, run_name='__main__', alter_sys=True)


if __name__ == '__main__':
  main(sys.argv[1:])
