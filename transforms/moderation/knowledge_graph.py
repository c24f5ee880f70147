"""Links person mentions to canonical knowledge-graph ids, offline.

The moderation rule counts mentions of a *person*, not of a string: "Obama",
"President Obama", "Barack Obama" and "Barack H. Obama" must be one id. Cloud
Natural Language does this with its knowledge graph (the entity's
wikipedia_url); the local backend does it with an alias table (the built-in
`knowledge/person_aliases.tsv`, or the user's: alias_tables.py) whose
canonical ids are the same Wikipedia URLs, so both backends produce the same
ids for well-known people.

Every person is reachable by several keys (normalised surface forms), each
at a strength, its *tier*:
  0 (FULL)        the name from the Wikipedia title and the explicit aliases;
  1 (FIRST_LAST)  first + last name (middle names and initials dropped);
  2 (SURNAME)     the surname alone ("de Gaulle", "bin Laden": particles
                  kept), implicit for every person but those whose surname
                  is two letters or shorter or whose name is an epithet
                  ("Alexander the Great");
  3 (FIRST_NAME)  the first name alone: only ever by context ("Angela Merkel
                  ... Angela"), never on its own ("Angela" alone is nobody).

A key may name several people (a surname two rows share, "Bush" listed for
George W. and implied for George H. W.), or a person and somebody else (a
surname that is also a first name in the table: "John", "James" stand for
many people besides Elton John and LeBron James). Such a key resolves by one
documented rule, never silently to the wrong person (`resolve`):
  1. context: if exactly one of its people is also named unambiguously in
     the same comment ("Hillary Clinton said Clinton ..."), that one;
  2. else the table's priority: among the candidates of tiers 0-2, the one
     of the strongest tier, then of the highest row `priority` (default 0),
     if it is the only one there;
  3. else nobody (the mention stays unlinked).
"""
import dataclasses
import re
import unicodedata
import urllib.parse

WIKIPEDIA_PREFIX = 'https://en.wikipedia.org/wiki/'
_WIKIPEDIA_HOSTS = ('en.wikipedia.org', 'en.m.wikipedia.org')

# Words before a name that qualify it without naming anyone; skipped, and
# never evidence that a name follows ("the trump card").
MODIFIERS = frozenset(
    'the former late current acting then ex outgoing incoming future'.split())
# Titles before a name: skipped when linking, and evidence that the word
# after them is a name ("president trump" is a person, "trump" may not be).
# Configurable (`title_words`, pipelines' --title_prefixes); one word each,
# so "Prime Minister" and "Vice President" are covered word by word.
DEFAULT_TITLES = tuple(sorted('''
    president pres vice mr mrs ms miss mx dr prof professor sir dame lord lady
    madam madame senator sen rep representative congressman congresswoman
    governor gov mayor secretary minister prime chancellor premier taoiseach
    king queen prince princess emperor empress pope saint st general gen
    admiral adm colonel col captain capt lieutenant lt sergeant sgt judge
    justice chief speaker ambassador rev reverend father fr rabbi imam
    ayatollah sheikh chairman chairwoman ceo comrade dictator leader
    candidate nominee coach frau herr
'''.split()))
SUFFIXES = frozenset({'jr', 'sr', 'ii', 'iii', 'iv'})
# Lower-case words that belong to the surname before them.
PARTICLES = frozenset(
    'de da di do dos das du del della der den van von le la bin ibn al el ter '
    'ten'.split())
FULL, FIRST_LAST, SURNAME, FIRST_NAME = 0, 1, 2, 3
PERSON = 'PERSON'
_TITLE_WORD = re.compile(r"^[a-z][a-z'\-]*$")


def normalise(text):
  """Lower-case, accent-free, punctuation-light form used for every lookup.

  "Barack H. Obama's" -> "barack h obama"; "J.K. Rowling" and "J. K.
  Rowling" -> "jk rowling" (runs of initials join); "Schröder" -> "schroder".
  """
  return ' '.join(tokens_of(text))


def strip_accents(text):
  text = unicodedata.normalize('NFKD', text)
  return ''.join(ch for ch in text if not unicodedata.combining(ch))


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


def tokens_of(text):
  """normalise() as a token list."""
  text = strip_accents(text).lower().replace('\u2019', "'").replace(
      '\u2018', "'")
  text = re.sub(r"'s\b", '', text)
  text = re.sub(r"[^\w\s'\-]", ' ', text)
  tokens = [t.strip("'-") for t in text.split()]
  return _join_initials([t for t in tokens if t])


def title_words(prefixes):
  """The title words a table skips before names, checked: lower case, a
  trailing '.' dropped ("Dr." -> "dr"); a first word starting with "+"
  adds the words to DEFAULT_TITLES instead of replacing them. Raises
  ValueError naming a bad one."""
  prefixes = list(prefixes)
  words = []
  if prefixes and prefixes[0].startswith('+'):
    prefixes[0] = prefixes[0][1:]
    words.extend(DEFAULT_TITLES)
  for prefix in prefixes:
    word = prefix.strip().lower().rstrip('.')
    if not _TITLE_WORD.match(word):
      raise ValueError(f'{prefix!r} is not a single word (give multi-word '
                       'titles word by word: prime,minister)')
    words.append(word)
  if not words:
    raise ValueError('name at least one title word')
  return frozenset(words)


def strip_titles(tokens, titles=frozenset(DEFAULT_TITLES)):
  """Drops leading modifiers and titles ("former President") while a name
  remains."""
  tokens = list(tokens)
  while len(tokens) > 1 and (tokens[0] in titles or tokens[0] in MODIFIERS):
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
  """The implicit surname key: "charles de gaulle" -> "de gaulle"; None for
  a single name, an epithet ("alexander the great") or a surname of two
  letters or fewer ("kim jong un", "malcolm x": too easily another word)."""
  core = _core(tokens)
  if len(core) < 2 or 'the' in core:
    return None
  start = len(core) - 1
  while start > 1 and core[start - 1] in PARTICLES:
    start -= 1
  last = core[start:]
  if len(last) == 1 and len(last[0]) <= 2:
    return None
  return ' '.join(last)


def title_to_name(title):
  """"James_K._Polk" -> "James K. Polk"; "Drake_(musician)" -> "Drake".

  A title with a comma ("Prince_William,_Prince_of_Wales") names a role, not
  a person's name: it yields None and the row's explicit aliases do the work.
  """
  name = title.replace('_', ' ')
  name = re.sub(r'\s*\([^)]*\)\s*$', '', name).strip()
  return None if ',' in name else name


def wikipedia_id(url):
  """A Wikipedia URL as a canonical id: https, the desktop host, the title
  decoded and with a capital first letter, as the table writes its ids
  ("http://en.m.wikipedia.org/wiki/Gerhard_Schr%C3%B6der" ->
  "https://en.wikipedia.org/wiki/Gerhard_Schröder"). Other URLs are kept."""
  parts = urllib.parse.urlsplit(url.strip())
  if parts.netloc.lower() not in _WIKIPEDIA_HOSTS or not parts.path.startswith(
      '/wiki/'):
    return url
  title = urllib.parse.unquote(parts.path[len('/wiki/'):]).replace(' ', '_')
  return WIKIPEDIA_PREFIX + title[:1].upper() + title[1:]


@dataclasses.dataclass(frozen=True)
class Person:
  """One row of an alias table."""
  title: str            # the Wikipedia title: the id is WIKIPEDIA_PREFIX + it
  aliases: tuple = ()   # surface forms besides the title's name
  priority: int = 0     # breaks ties between rows sharing a key
  mid: str = None       # Google Knowledge Graph id (/m/..., /g/...), if known
  type: str = PERSON    # another Cloud NL type: a place or thing named
                        # like people ("Washington", "Tesla"), a sense
                        # their names compete with, never linked as one

  @property
  def person(self):
    return self.type == PERSON

  @property
  def url(self):
    return WIKIPEDIA_PREFIX + self.title

  def names(self):
    """The written names of tier FULL: the title's name, then the aliases."""
    base = title_to_name(self.title)
    return ([base] if base else []) + list(self.aliases)


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A person (or, person False, a place or thing) a key may mean; url None
  stands for "someone the table does not list under this key" (a surname
  that is another person's first name)."""
  url: str
  tier: int
  priority: int
  person: bool = True

  def rank(self):
    return (self.tier, -self.priority)


def unambiguous(candidates):
  """The url of candidates that need no context, else None: what may serve
  as context for the other mentions of a comment."""
  if len(candidates) == 1 and candidates[0].tier < FIRST_NAME:
    return candidates[0].url
  return None


def resolve(candidates, context=frozenset(), evidence=None):
  """The url a key's candidates resolve to (module docstring), or None.

  `context`: urls named unambiguously elsewhere in the same comment;
  `evidence`: what the words around the mention say it is: 'person' (a
  title before it, a recogniser's PERSON label) leaves out the places and
  things, 'other' (a recogniser's other label over exactly the mention)
  picks them if the key has any, None says nothing.
  """
  if evidence == 'person':
    candidates = [c for c in candidates if c.person]
  elif evidence == 'other':
    candidates = [c for c in candidates if not c.person] or candidates
  if not candidates:
    return None
  if unambiguous(candidates):
    return candidates[0].url
  named = {c.url for c in candidates if c.url and c.url in context}
  if len(named) == 1:
    return named.pop()
  ranked = [c for c in candidates if c.tier < FIRST_NAME]  # sorted by rank
  if not ranked or (len(ranked) > 1 and ranked[1].rank() == ranked[0].rank()):
    return None
  return ranked[0].url


class AliasTable(object):
  """Surface form -> candidates -> canonical Wikipedia URL."""

  def __init__(self, people, titles=DEFAULT_TITLES):
    """people: iterable of Person; titles: words skipped before names."""
    self.titles = frozenset(titles)
    self.people = []
    found = {}  # key -> {url: Candidate}
    first_names = {}  # first name -> the people it begins

    def add(key, tier, person):
      if not key:
        return
      options = found.setdefault(key, {})
      old = options.get(person.url)
      if old is None or tier < old.tier:
        options[person.url] = Candidate(person.url, tier, person.priority,
                                        person.person)

    for person in people:
      self.people.append(person)
      for name in person.names():
        tokens = tokens_of(name)
        add(' '.join(tokens), FULL, person)
        add(first_last(tokens), FIRST_LAST, person)
      base = title_to_name(person.title)
      if base and person.person and not person.title[0].isdigit():
        base_tokens = _core(tokens_of(base))
        add(surname(base_tokens), SURNAME, person)
        if len(base_tokens) >= 2 and base_tokens[0] not in self.titles:
          first_names.setdefault(base_tokens[0], []).append(person)
    for key, named in first_names.items():
      if key in found:  # a surname or alias: also a first name of others
        found[key][None] = Candidate(None, SURNAME, 0)
      for person in named:
        add(key, FIRST_NAME, person)
    self._index = {
        key: tuple(sorted(options.values(), key=Candidate.rank))
        for key, options in found.items()}
    self.mids = {p.mid: p.url for p in self.people if p.mid}
    self.person_urls = frozenset(p.url for p in self.people if p.person)

  def __len__(self):
    return len(self._index)

  def keys(self):
    return self._index.keys()

  def candidates(self, mention):
    """The candidates of the first key of `mention` the table knows: the
    mention as written, then without leading titles, then as first + last
    name ("Barack H. Obama" -> "barack obama"). () when none."""
    tokens = tokens_of(mention)
    if not tokens:
      return ()
    stripped = strip_titles(tokens, self.titles)
    for key in (' '.join(tokens), ' '.join(stripped), first_last(stripped)):
      found = self._index.get(key) if key else None
      if found:
        return found
    return ()

  def link(self, mention, context=frozenset(), evidence=None):
    """The canonical URL of a mention (a person's, or a place's or thing's
    if the table lists it), or None if unknown or unresolved."""
    found = self.candidates(mention)
    return resolve(found, context, evidence) if found else None

  def canonical_id(self, wikipedia_url='', mid='', name='',
                   context=frozenset()):
    """The id of an entity Cloud NL reports: its Wikipedia URL (as
    `wikipedia_id`), else the table's row with that mid, else the table's
    person for its name (a PERSON has been reported), else the mid itself,
    else ''."""
    if wikipedia_url:
      return wikipedia_id(wikipedia_url)
    if mid and mid in self.mids:
      return self.mids[mid]
    linked = self.link(name, context, 'person') if name else None
    return linked or mid or ''


def fallback_id(mention, entity_type, titles=frozenset(DEFAULT_TITLES)):
  """A stable id for a mention no table knows: "local:person:jane_doe".

  Titles are dropped so that "Ms. Jane Doe" and "Jane Doe" still match.
  """
  tokens = strip_titles(tokens_of(mention), titles)
  return f'local:{entity_type.lower()}:' + '_'.join(tokens) if tokens else ''
