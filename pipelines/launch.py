"""The thin entry-point machinery every pipeline's `run(argv)` goes through.

Fail early, once, clearly: problems with the command line or configuration are
raised as `UsageError` while the pipeline is constructed and reported as one
line naming the flag, with exit code 2, never as a traceback from a worker.
"""
import contextlib
import difflib
import logging
import os
import sys
import time

from common.config_error import ConfigError

EXIT_USAGE = 2
LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'


class UsageError(Exception):
  """A user error on the command line: reported as one line, exit code 2."""

  def __init__(self, flag, problem):
    super().__init__(f'{flag}: {problem}' if flag else problem)
    self.flag = flag
    self.problem = problem


@contextlib.contextmanager
def flag_names(**flags):
  """Turns a ConfigError (a transform's config refusing a setting) raised
  inside into a UsageError naming the flag the setting came from:
  `--<field>`, or the flag `flags` maps the field to."""
  try:
    yield
  except ConfigError as e:
    raise UsageError(f'--{flags.get(e.field, e.field)}', e.problem) from None


def parse_args(parser, argv=None):
  """(the job's flags, the rest: Beam's pipeline options).

  A bare word that follows no option is refused: it is almost always a file
  pattern the shell expanded (`--input data/*.jsonl` unquoted reads the first
  file, and Beam would drop the others with a log line). So is a flag that
  is neither the job's nor Beam's: Beam only logs a warning and the job runs
  without it (a misspelt `--runnr` runs on the default runner).
  """
  args, rest = parser.parse_known_args(argv)
  _check_unknown_flags(parser, rest)
  for i, token in enumerate(rest):
    follows_option = i > 0 and rest[i - 1].startswith('--') and (
        '=' not in rest[i - 1])
    if not token.startswith('-') and not follows_option:
      raise UsageError(None, f'unexpected argument {token!r}: quote file '
                       "patterns (--input 'data/*.jsonl') so that the shell "
                       'does not expand them')
  return args, rest


def _check_unknown_flags(parser, rest):
  from pipelines import flags  # pylint: disable=import-outside-toplevel
  beam_flags = None
  for token in rest:
    if not token.startswith('--'):
      continue
    name = token.split('=', 1)[0]
    if beam_flags is None:
      beam_flags = flags.beam_flags()
    if name in beam_flags:
      continue
    known = list(beam_flags) + list(parser._option_string_actions)  # pylint: disable=protected-access
    close = difflib.get_close_matches(name, known, n=1)
    raise UsageError(None, f'unknown flag {name!r}, neither the job\'s nor a '
                     'Beam pipeline option' + (
                         f'; did you mean {close[0]}?' if close else ''))


def run_batch_job(argv, parser, flag_list, job_class, build):
  """What a batch job's run() does before its summary: parses the command
  line, checks it into `job_class(args, options)` (usage errors before
  anything runs), builds the pipeline with `build(pipeline, job)`, runs it
  to the end. Returns (job, result, elapsed seconds)."""
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  from pipelines import flags  # pylint: disable=import-outside-toplevel
  from pipelines import local_runner  # pylint: disable=import-outside-toplevel
  from pipelines import progress  # pylint: disable=import-outside-toplevel
  args, beam_args = parse_args(parser, argv)
  options = local_runner.pick_runner(
      flags.pipeline_options(beam_args, args, flag_list))
  job = job_class(args, options)
  started = time.time()
  pipeline = beam.Pipeline(options=options)
  build(pipeline, job)
  result = progress.run(pipeline)
  result.wait_until_finish()
  return job, result, time.time() - started


def main(run, argv=None):
  """Calls `run(argv)`, turning UsageError into one line on stderr + exit 2.

  Logs at INFO, as Beam's own examples do: the DataflowRunner's job id and
  console URL, the job's messages while it runs, the progress lines of a
  local run (pipelines.progress).

  Returns run's result (a summary dict, an exit code or None) so that `python
  -m pipelines.X` can `sys.exit(main(run))` with a meaningful status.
  """
  logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
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
