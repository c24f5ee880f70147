"""After a file sink commits, removes what earlier runs left under its prefix.

Beam's file sinks write each shard to a temporary folder and rename the
shards into place at the end (finalize); before renaming they delete the
existing files of the *same* shard count (`PREFIX-*-of-00004.jsonl`). Two
things survive that:

- shards of another count: a run killed while renaming, or an earlier run
  with another --num_shards (or one where the runner chose another count),
  leaves `PREFIX-00000-of-00003.jsonl` beside this run's `...-of-00002`,
  and a reader of `PREFIX-*` gets those records twice, or a partial set;
- the temporary folder (`beam-temp-NAME-<uuid>`) of a run killed before it
  finished, which nothing ever deletes.

`RemoveStaleShards` takes the file names the sink finalized (what Beam's
Write returns) and, once they are all in place, deletes every other shard
of the prefix (any count, Beam's five-digit shard names) and those
temporary folders, so a rerun with the same prefix leaves exactly its own
output. Only names of that exact form are touched: a dead-letter prefix such
as `PREFIX_errors` never matches.
"""
import glob
import logging
import posixpath

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

_DIGITS = '[0-9]' * 5
_LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = 'output'


def shard_glob(prefix, suffix):
  """Every shard of `prefix` Beam's default template can name, any count."""
  return f'{prefix}-{_DIGITS}-of-{_DIGITS}{suffix}'


def temp_glob(prefix):
  """The temporary folders Beam's sinks make for `prefix`:
  beam-temp-NAME-<uuid1 hex>, so another prefix's (NAME-log) never
  matches."""
  directory, name = posixpath.split(prefix)
  return FileSystems.join(directory or '.',
                          f'beam-temp-{name}-' + '[0-9a-f]' * 32)


def _matched(pattern):
  return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


def remove_stale(written, prefix, suffix):
  """Deletes the shards of `prefix` not in `written` and earlier runs'
  temporary folders; returns the number of paths deleted."""
  keep = set(written)
  stale = [path for path in _matched(shard_glob(prefix, suffix))
           if path not in keep]
  if stale:
    _LOG.warning('Deleting %d shards an earlier run left under %s: %s',
                 len(stale), prefix, ', '.join(sorted(stale)[:5]))
    FileSystems.delete(stale)
  if FileSystems.get_scheme(prefix) is None:  # local: the folders, empty
    temporary = sorted(glob.glob(temp_glob(prefix)))  # ones too
  else:  # an object store has no folders, only the files in them
    temporary = _matched(FileSystems.join(temp_glob(prefix), '*'))
  if temporary:
    try:
      FileSystems.delete(temporary)
    except BeamIOError as e:  # a folder Beam itself deleted meanwhile
      _LOG.info('Temporary files of %s not all deleted: %s', prefix, e)
  return len(stale) + len(temporary)


class _RemoveStale(beam.DoFn):

  def __init__(self, prefix, suffix):
    self._prefix, self._suffix = prefix, suffix
    self._removed = Metrics.counter(METRICS_NAMESPACE, 'stale_files_removed')

  def process(self, written):
    self._removed.inc(remove_stale(written, self._prefix, self._suffix))
    yield from written


class RemoveStaleShards(beam.PTransform):
  """The paths a sink wrote under `prefix` (+ `suffix`) -> the same paths,
  once every other shard of the prefix and earlier runs' temporary folders
  are deleted."""

  def __init__(self, prefix, suffix=''):
    super().__init__()
    self._prefix, self._suffix = prefix, suffix

  def expand(self, written):
    return (written
            | 'All written' >> beam.combiners.ToList()
            | 'Remove stale' >> beam.ParDo(
                _RemoveStale(self._prefix, self._suffix)))
