"""Links person mentions to canonical knowledge-graph ids, offline.

The moderation rule counts mentions of a *person*, not of a string: "Obama",
"President Obama", "Barack Obama" and "Barack H. Obama" must be one id. Cloud
Natural Language does this with its knowledge graph (the entity's
wikipedia_url); the local backend does it with a versioned alias table
(`knowledge/person_aliases.tsv`) whose canonical ids are the same Wikipedia
URLs, so both backends produce the same ids for well-known people.

Aliases come in three strengths. A conflict between two rows at the same
strength is resolved safely: the shared alias is dropped (an ambiguous "Bush"
links to nobody rather than to the wrong person), except for explicit aliases
and full names, where a conflict is a bug in the table and raises.
  1. the full name (from the title) and the explicit aliases;
  2. first + last name (middle names/initials dropped);
  3. the surname alone.
"""
import functools
import importlib.resources
import pathlib
import re
import unicodedata

WIKIPEDIA_PREFIX = 'https://en.wikipedia.org/wiki/'

# Leading words that qualify a name without changing who it is.
TITLES = frozenset('''
    the former late current acting president pres vice mr mrs ms miss mx dr
    prof professor sir dame lord lady senator sen rep representative
    congressman congresswoman governor gov mayor secretary minister prime
    chancellor premier king queen prince princess emperor empress pope saint
    st general gen admiral adm colonel col captain capt lieutenant lt sergeant
    sgt judge justice chief speaker ambassador rev reverend father fr rabbi
    imam ayatollah sheikh chairman chairwoman ceo comrade dictator leader
    candidate nominee coach
'''.split())
SUFFIXES = frozenset({'jr', 'sr', 'ii', 'iii', 'iv'})


def normalise(text):
  """Lower-case, accent-free, punctuation-light form used for every lookup.

  "Barack H. Obama's" -> "barack h obama"; "J.K. Rowling" and "J. K.
  Rowling" -> "jk rowling" (runs of initials join); "Schröder" -> "schroder".
  """
  return ' '.join(_tokens(text))


def _join_initials(tokens):
  out = []
  run = False
  for token in tokens:
    if len(token) == 1 and token.isalpha() and run:
      out[-1] += token
    else:
      out.append(token)
      run = len(token) == 1 and token.isalpha()
  return out


def _tokens(text):
  """normalise() as a token list."""
  text = unicodedata.normalize('NFKD', text)
  text = ''.join(ch for ch in text if not unicodedata.combining(ch))
  text = text.lower().replace('\u2019', "'").replace('\u2018', "'")
  text = re.sub(r"'s\b", '', text)
  text = re.sub(r"[^\w\s'\-]", ' ', text)
  tokens = [t.strip("'-") for t in text.split()]
  return _join_initials([t for t in tokens if t])


def strip_titles(tokens):
  """Drops leading titles ("former President") while a name remains."""
  tokens = list(tokens)
  while len(tokens) > 1 and tokens[0] in TITLES:
    tokens = tokens[1:]
  return tokens


def _core(tokens):
  """The name without generational suffixes ("Jr", "III")."""
  core = [t for t in tokens if t not in SUFFIXES]
  return core or tokens


def first_last(tokens):
  """First and last name ("barack h obama" -> "barack obama"), or None."""
  core = _core(tokens)
  if len(core) < 3:
    return None
  return f'{core[0]} {core[-1]}'


def surname(tokens):
  core = _core(tokens)
  return core[-1] if len(core) >= 2 else None


def title_to_name(title):
  """"James_K._Polk" -> "James K. Polk"; "Drake_(musician)" -> "Drake".

  A title with a comma ("Prince_William,_Prince_of_Wales") names a role, not
  a person's name: it yields None and the row's explicit aliases do the work.
  """
  name = title.replace('_', ' ')
  name = re.sub(r'\s*\([^)]*\)\s*$', '', name).strip()
  return None if ',' in name else name


class AliasTable(object):
  """Surface form -> canonical Wikipedia URL for well-known people."""

  def __init__(self, rows):
    """rows: iterable of (wikipedia_title, [aliases])."""
    levels = ({}, {}, {})  # strength -> alias -> set of ids
    for title, aliases in rows:
      url = WIKIPEDIA_PREFIX + title
      names = [a for a in [title_to_name(title)] + list(aliases) if a]
      for name in names:
        tokens = _tokens(name)
        key = ' '.join(tokens)
        if key:
          levels[0].setdefault(key, set()).add(url)
        short = first_last(tokens)
        if short:
          levels[1].setdefault(short, set()).add(url)
      base = title_to_name(title)
      last = surname(_tokens(base)) if base and not title[0].isdigit() else None
      if last:
        levels[2].setdefault(last, set()).add(url)
    conflicts = {k: v for k, v in levels[0].items() if len(v) > 1}
    if conflicts:
      raise ValueError(f'aliases naming several people: {conflicts}')
    self._index = {}
    for level in reversed(levels):  # stronger levels overwrite weaker ones
      for alias, urls in level.items():
        if len(urls) == 1:
          self._index[alias] = next(iter(urls))
        else:
          self._index.pop(alias, None)
    self.people = len({url for url in self._index.values()})

  def __len__(self):
    return len(self._index)

  def link(self, mention):
    """Returns the canonical URL for a mention, or None if unknown.

    Tries the mention as written, then without leading titles, then as
    first + last name ("Barack H. Obama" -> "barack obama").
    """
    tokens = _tokens(mention)
    if not tokens:
      return None
    candidates = [tokens, strip_titles(tokens)]
    for toks in candidates:
      url = self._index.get(' '.join(toks))
      if url:
        return url
    short = first_last(candidates[-1])
    return self._index.get(short) if short else None


def fallback_id(mention, entity_type):
  """A stable id for a mention no table knows: "local:person:jane_doe".

  Titles are dropped so that "Ms. Jane Doe" and "Jane Doe" still match.
  """
  tokens = strip_titles(_tokens(mention))
  return f'local:{entity_type.lower()}:' + '_'.join(tokens) if tokens else ''


def builtin_table():
  """The built-in table (package data), found where the package is installed
  when it is read: a job built elsewhere sends workers None, never a path
  on the machine that built it."""
  return importlib.resources.files(__package__).joinpath(
      'knowledge', 'person_aliases.tsv')


def read_rows(path=None):
  """Parses the TSV: comments (#), a header, then title<TAB>a|b|c rows.
  `path` None: the built-in table."""
  source = pathlib.Path(path) if path else builtin_table()
  with source.open(encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      line = line.rstrip('\n')
      if not line.strip() or line.startswith('#'):
        continue
      title, _, aliases = line.partition('\t')
      if title == 'wikipedia_title':
        continue
      if not title or ' ' in title:
        raise ValueError(f'{source}:{number}: bad wikipedia_title {title!r}')
      yield title, [a.strip() for a in aliases.split('|') if a.strip()]


@functools.lru_cache(maxsize=4)
def load(path=None):
  """The alias table at `path` (None: the built-in one), loaded once per
  process."""
  return AliasTable(read_rows(path))
