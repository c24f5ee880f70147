"""What every job's usage error must be: exit code 2 and one line, no
traceback."""
from pipelines import launch


def one_line_error(capsys, run, argv):
  """Runs a job's `run` through launch.main; returns its one error line."""
  code = launch.main(run, argv)
  err = capsys.readouterr().err.strip()
  assert code == launch.EXIT_USAGE and 'Traceback' not in err, err
  assert len(err.splitlines()) == 1, err
  return err
