"""The thin entry-point machinery every pipeline's `run(argv)` goes through.

Fail early, once, clearly: problems with the command line or configuration are
raised as `UsageError` while the pipeline is constructed and reported as one
line naming the flag, with exit code 2, never as a traceback from a worker.
"""
import argparse
import logging
import os
import sys

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions

EXIT_USAGE = 2


class UsageError(Exception):
  """A user error on the command line: reported as one line, exit code 2."""

  def __init__(self, flag, problem):
    super().__init__(f'{flag}: {problem}' if flag else problem)
    self.flag = flag
    self.problem = problem


def boolean(text):
  """argparse type for on/off flags: 'true' or 'false' (any case)."""
  lowered = text.strip().lower()
  if lowered not in ('true', 'false'):
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')
  return lowered == 'true'


# Keyword arguments for an on/off flag: `--flag`, `--flag=true` and
# `--flag=false` all work. A Flex Template passes every parameter as
# --name=value, which argparse's store_true rejects, so every on/off flag of a
# pipeline is declared as `parser.add_argument('--x', **launch.SWITCH, ...)`.
SWITCH = dict(type=boolean, nargs='?', const=True, default=False,
              metavar='true|false')


def parse_args(parser, argv=None):
  """(the job's flags, the rest: Beam's pipeline options).

  A bare word that follows no option is refused: it is almost always a file
  pattern the shell expanded (`--input data/*.jsonl` unquoted reads the first
  file, and Beam would drop the others with a log line).
  """
  args, rest = parser.parse_known_args(argv)
  for i, token in enumerate(rest):
    follows_option = i > 0 and rest[i - 1].startswith('--') and (
        '=' not in rest[i - 1])
    if not token.startswith('-') and not follows_option:
      raise UsageError(None, f'unexpected argument {token!r}: quote file '
                       "patterns (--input 'data/*.jsonl') so that the shell "
                       'does not expand them')
  return args, rest


def default_local_runner(options: PipelineOptions):
  """Picks the runner when the user named none.

  Batch jobs default to the FnApiRunner: it is the fastest local runner and,
  unlike the DirectRunner, does not try to download the Prism binary first.
  Streaming jobs keep the DirectRunner, which supports TestStream and Pub/Sub.

  `--direct_num_workers=N` alone is ignored by Beam (its default running mode,
  in_memory, runs one worker and logs a warning); here it means N worker
  threads (`multi_threading`), which share the process and its loaded model
  and overlap the model's native work with Python. Pass
  `--direct_running_mode` to choose otherwise (`multi_processing` starts N
  processes, each importing TensorFlow and loading the model).
  """
  standard = options.view_as(StandardOptions)
  if standard.runner is None:
    standard.runner = 'DirectRunner' if standard.streaming else 'FnApiRunner'
  direct = options.view_as(DirectOptions)
  chosen = options.get_all_options(drop_default=True)
  if direct.direct_num_workers != 1 and 'direct_running_mode' not in chosen:
    direct.direct_running_mode = 'multi_threading'
  return options


def usable_cores():
  """Cores this process may run on: its CPU affinity where the OS keeps one
  (a container or `taskset` pinned to a cpuset sees its share, not the
  host's count), else os.cpu_count()."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # no affinity on this platform
    return os.cpu_count() or 1


_LOCAL_RUNNERS = ('DirectRunner', 'FnApiRunner', 'BundleBasedDirectRunner',
                  'SwitchingDirectRunner', 'PrismRunner')


def is_local_runner(options: PipelineOptions):
  """True when the job runs in this process tree (not on Dataflow & co.)."""
  runner = options.view_as(StandardOptions).runner
  name = runner if isinstance(runner, str) else type(runner).__name__
  return runner is None or name.split('.')[-1] in _LOCAL_RUNNERS


def main(run, argv=None):
  """Calls `run(argv)`, turning UsageError into one line on stderr + exit 2.

  Returns run's result (a summary dict, an exit code or None) so that `python
  -m pipelines.X` can `sys.exit(main(run))` with a meaningful status.
  """
  logging.getLogger().setLevel(logging.WARNING)
  try:
    result = run(argv)
  except UsageError as e:
    print(f'{_prog(run)}: error: {e}', file=sys.stderr)
    return EXIT_USAGE
  return result if isinstance(result, int) else 0


def _prog(run):
  """How the job was started, as argparse names it in its own errors:
  'python -m pipelines.batch_predict'."""
  module = run.__module__
  if module == '__main__':
    spec = getattr(sys.modules['__main__'], '__spec__', None)
    if spec is None:
      return os.path.basename(sys.argv[0]) or 'pipeline'
    module = spec.name
  return f'python -m {module}'
