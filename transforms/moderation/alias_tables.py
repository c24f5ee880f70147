"""Where alias tables come from: the built-in one, or the user's file.

A DoFn is pickled on the machine that submits the job and runs on a worker
that has the installed package but not the submitter's files, so an
`AliasSource` never carries a path to the built-in table: it carries what
the worker can use.
  - built-in (no path): `knowledge/person_aliases.tsv`, package data found
    on the worker with importlib.resources;
  - a local file: read (and checked) at construction, its text travels in
    the pickled DoFn (up to MAX_EMBEDDED_BYTES; larger tables belong on
    gs://);
  - any other Beam file system (gs://...): checked at construction, read
    again on each worker with Beam's FileSystems.

Formats, chosen by the file name (a .gz/.bz2/... suffix is decompressed):
  .tsv/.tab/.txt  `#` comment lines, then an optional header naming
                  columns among COLUMNS (default: that order), then one row
                  per person: wikipedia_title<TAB>alias|alias[<TAB>priority
                  [<TAB>mid[<TAB>type]]];
  .jsonl/.ndjson/.json  one object per line with the same fields (aliases
                  as a list of strings).
`type` (default PERSON, else one of TYPES) marks a place or thing named
like people ("Washington", "Tesla"): a sense their names compete with
(knowledge_graph.resolve), never linked as a person. Every bad row is
reported (file and line, what is wrong) in one error.
"""
import hashlib
import importlib.resources
import io
import json
import re

from common.config_error import ConfigError
from transforms.moderation import knowledge_graph
from transforms.moderation.knowledge_graph import Person

FIELD = 'alias_table'
BUILTIN_NAME = 'person_aliases.tsv'
COLUMNS = ('wikipedia_title', 'aliases', 'priority', 'mid', 'type')
# Cloud Natural Language's entity types (language_v1.Entity.Type).
TYPES = ('PERSON', 'LOCATION', 'ORGANIZATION', 'EVENT', 'WORK_OF_ART',
         'CONSUMER_GOOD', 'OTHER', 'PHONE_NUMBER', 'ADDRESS', 'DATE', 'NUMBER',
         'PRICE')
MAX_EMBEDDED_BYTES = 8 << 20
MAX_REPORTED = 20
_PACKAGE = 'transforms.moderation'
_COMPRESSED = ('.gz', '.bz2', '.zst', '.deflate', '.lzma', '.xz')
_FORMATS = {'.tsv': 'tsv', '.tab': 'tsv', '.txt': 'tsv', '.jsonl': 'jsonl',
            '.ndjson': 'jsonl', '.json': 'jsonl'}
_MID = re.compile(r'^/[mg]/[0-9a-z_]+$')


def resource_text(name):
  """A file of the package's knowledge/ folder, from wherever the package is
  installed (a wheel on a worker, a checkout)."""
  return importlib.resources.files(_PACKAGE).joinpath(
      'knowledge', name).read_text(encoding='utf-8')


def table_format(path):
  name = path.lower()
  for suffix in _COMPRESSED:
    if name.endswith(suffix):
      name = name[:-len(suffix)]
  for suffix, fmt in _FORMATS.items():
    if name.endswith(suffix):
      return fmt
  raise ConfigError(FIELD, f'{path}: unknown format: name it .tsv or '
                    '.jsonl (optionally compressed, e.g. .tsv.gz)')


def _read(path):
  """The text of `path` on any Beam file system, decompressed by its
  suffix."""
  from apache_beam.io.filesystems import FileSystems
  try:
    with FileSystems.open(path) as f:
      data = f.read()
  except Exception as e:  # pylint: disable=broad-except
    # Beam wraps a missing file in BeamIOError, gs:// adds its own errors.
    raise ConfigError(FIELD, f'cannot read {path}: {e}') from None
  try:
    return data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise ConfigError(FIELD, f'{path}: not UTF-8 text ({e})') from None


def _is_local(path):
  from apache_beam.io.filesystems import FileSystems
  return FileSystems.get_scheme(path) is None


class AliasSource(object):
  """The alias table a backend uses, in a form that pickles to workers.

  Constructing one with a path reads and checks the table (ConfigError on
  any problem), so a bad table stops the job before it is submitted.
  """

  key = ('builtin', BUILTIN_NAME)  # what a process caches the table under

  def __init__(self, path=None):
    self.path = path
    self._text = None
    if path is None:
      self._format = 'tsv'
      return
    self._format = table_format(path)
    if _is_local(path):
      self._text = _read(path)
      size = len(self._text.encode('utf-8'))
      if size > MAX_EMBEDDED_BYTES:
        raise ConfigError(FIELD, f'{path}: {size:,} bytes is too large to '
                          'travel with the job; copy it to gs:// and give '
                          'that path')
      self.key = ('embedded', hashlib.sha256(self._text.encode()).hexdigest())
      self.people()
    else:
      self.key = ('remote', path)
      self.people()

  @property
  def name(self):
    return self.path or f'the built-in {BUILTIN_NAME}'

  def text(self):
    if self.path is None:
      return resource_text(BUILTIN_NAME)
    if self._text is not None:
      return self._text
    return _read(self.path)

  def people(self):
    """The table's rows as Person objects (ConfigError if any is bad)."""
    return parse(self.text(), self._format, self.name)

  def table(self, titles=knowledge_graph.DEFAULT_TITLES):
    return knowledge_graph.AliasTable(self.people(), titles)


def _tsv_rows(text):
  """(line number, {column: value}) per row, or (line number, problem)."""
  columns = None
  for number, line in enumerate(io.StringIO(text), 1):
    line = line.rstrip('\r\n')
    if not line.strip() or line.startswith('#'):
      continue
    cells = line.split('\t')
    if columns is None and cells[0].strip() == COLUMNS[0]:
      columns = [c.strip() for c in cells]
      unknown = [c for c in columns if c not in COLUMNS]
      if unknown or len(set(columns)) != len(columns):
        yield number, (f'header {columns}: columns are some of '
                       f'{", ".join(COLUMNS)}, each once')
        return
      continue
    names = columns or COLUMNS
    if len(cells) > len(names):
      yield number, (f'{len(cells)} tab-separated cells, expected at most '
                     f'{len(names)} ({", ".join(names)})')
      continue
    row = dict(zip(names, cells))
    row['aliases'] = [a for a in row.get('aliases', '').split('|')]
    yield number, row


def _jsonl_rows(text):
  for number, line in enumerate(io.StringIO(text), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError as e:
      yield number, f'not JSON ({e})'
      continue
    if not isinstance(row, dict):
      yield number, 'not a JSON object'
      continue
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
      yield number, (f'unknown field(s) {", ".join(unknown)}; fields are '
                     f'{", ".join(COLUMNS)}')
      continue
    yield number, row


def _person(row):
  """Person from a row's fields, or the problem with them (a str)."""
  title = row.get('wikipedia_title')
  if not isinstance(title, str) or not title.strip():
    return 'missing wikipedia_title'
  title = title.strip()
  if re.search(r'\s', title) or '/' in title:
    return (f'bad wikipedia_title {title!r}: a title as in the URL, '
            'underscores for spaces (Barack_Obama)')
  aliases = row.get('aliases') or []
  if not isinstance(aliases, list) or not all(
      isinstance(a, str) for a in aliases):
    return 'aliases must be a list of strings'
  aliases = [a.strip() for a in aliases if a.strip()]
  for alias in aliases:
    if not knowledge_graph.tokens_of(alias):
      return f'alias {alias!r} has no letters or digits'
  priority = row.get('priority')
  if priority in (None, ''):
    priority = 0
  elif isinstance(priority, str) and re.fullmatch(r'\s*-?\d+\s*', priority):
    priority = int(priority)
  elif not isinstance(priority, int) or isinstance(priority, bool):
    return f'priority {priority!r} is not an integer'
  mid = row.get('mid') or None
  if mid is not None and (not isinstance(mid, str) or
                          not _MID.match(mid.strip())):
    return f'mid {mid!r} is not a Knowledge Graph id (/m/... or /g/...)'
  type_ = (row.get('type') or 'PERSON')
  if not isinstance(type_, str) or type_.strip().upper() not in TYPES:
    return f'type {type_!r} is not one of {", ".join(TYPES)}'
  return Person(title, tuple(aliases), priority, mid and mid.strip(),
                type_.strip().upper())


def parse(text, fmt, name):
  """The people of a table's text; ConfigError listing every bad row."""
  rows = _tsv_rows(text) if fmt == 'tsv' else _jsonl_rows(text)
  people, problems, titles, mids = [], [], {}, {}
  for number, row in rows:
    person = row if isinstance(row, str) else _person(row)
    if isinstance(person, Person):
      if person.title in titles:
        person = (f'{person.title} already on line {titles[person.title]}')
      elif person.mid and person.mid in mids:
        person = f'mid {person.mid} already on line {mids[person.mid]}'
    if isinstance(person, str):
      problems.append(f'line {number}: {person}')
      continue
    titles[person.title] = number
    if person.mid:
      mids[person.mid] = number
    people.append(person)
  if problems:
    shown = '; '.join(problems[:MAX_REPORTED])
    more = (f'; and {len(problems) - MAX_REPORTED} more'
            if len(problems) > MAX_REPORTED else '')
    raise ConfigError(FIELD, f'{name}: {len(problems)} bad row(s): '
                      f'{shown}{more}')
  if not people:
    raise ConfigError(FIELD, f'{name}: no people in the table')
  return people


def common_words():
  """{word: share of its uses in lower case} for the lower-case words that
  are ordinary English words as well as names (models/common_words.py made
  the list): package data."""
  shares = {}
  for line in resource_text('common_words.txt').splitlines():
    if line.strip() and not line.startswith('#'):
      word, _, share = line.partition('\t')
      shares[word] = float(share)
  return shares
