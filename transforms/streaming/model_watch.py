"""New model versions under a watched pattern, found by listing it.

A version is a folder matched by the pattern (`models/sentiment/*`, local or
gs://) holding a `saved_model.pb`: a folder being copied becomes visible
when that file is there, so on GCS copy it last (or copy the folder under
another name and move it into place). Versions are ordered as TF Serving
orders them: numeric names by number (2 < 10), above any other names, which
sort as text. Listing is what Beam's WatchFilePattern does
(MatchContinuously); transforms.streaming.gated_inference says why the gate
lists itself.
"""
from apache_beam.io.filesystems import FileSystems

SAVED_MODEL = 'saved_model.pb'


def _parent(path):
  return path.rstrip('/').rsplit('/', 1)[0]


def version_folders(pattern):
  """The folders matched by `pattern` that hold a saved_model.pb."""
  files = f'{pattern.rstrip("/")}/{SAVED_MODEL}'
  try:
    matched = FileSystems.match([files])[0].metadata_list
  except Exception:  # pylint: disable=broad-except  # nothing there (yet)
    return []
  return sorted({_parent(m.path) for m in matched}, key=version_order)


def version_order(folder):
  """Sort key of a version folder: numbers by value, above other names."""
  name = folder.rstrip('/').rsplit('/', 1)[-1]
  return (1, int(name), '') if name.isdigit() else (0, 0, name)


def newest_candidate(pattern, live_dir, seen):
  """The newest folder under `pattern` newer than `live_dir` and not in
  `seen` (versions already tried), or None."""
  live = version_order(live_dir)
  newer = [f for f in version_folders(pattern)
           if version_order(f) > live and f.rstrip('/') not in seen]
  return newer[-1] if newer else None
