"""Finds the alias table's people in a spaCy doc, beside the statistical NER.

The small English model misses names in ordinary sentences ("Honestly Merkel
is overrated", "Chancellor Scholz and President Macron met"), and calls
others ORG or GPE ("Big fan of Obama": GPE; "TRUMP IS BACK": ORG). So the
table drives recognition directly: a spaCy PhraseMatcher over every key and
written name of the table (matched on lower-cased tokens) proposes alias
mentions, each widened over the title words before it ("former Vice
President Biden"); they are merged with the model's entities (`entities`):

1. Spans. Where a mention and a model entity overlap, the mention wins,
   unless the model's span is longer, covers it and either is itself a name
   the table knows or, in a normally cased comment, has name-like words
   beyond it (capitalised, not titles or possessives): "The Washington
   Post" (ORG), "Jane Merkel" (a PERSON the table does not know). So
   "Olaf Scholz's" (ORG), "Ocasio-Cortez vs de Gaulle" (ORG) and spaCy's
   "obama keep" (PERSON) give way to the names inside them.
2. Case, where it is not safe to ignore it. A mention made only of common
   English words (`alias_tables.common_words`, with the share of their uses
   in lower case: "jobs" 0.99, "swift" 0.56, "trump" 0.32; "the queen")
   and no title needs evidence that it names the person when written in
   lower case ("played the trump card"), and, if it is mostly the ordinary
   word (share >= MOSTLY_A_WORD), also where its capital says nothing: at
   the start of a sentence, in capitals ("Jobs report out today", "SWIFT
   ACTION"). Evidence: the same person named unambiguously elsewhere in the
   comment; for a capitalised mention also the model's PERSON span over it
   or a possessive after it ("Swift's"); in an all-lower-case comment the
   model's PERSON span too.
3. Linking: knowledge_graph.resolve, with the evidence of the words around
   the mention: a title or the model's PERSON label rule out the table's
   places and things ("President Ford" is not the company), the model's
   other label over exactly the mention picks them ("Theresa May resigned
   in May": DATE). A mention that resolves to a place or thing, or to
   nobody, is dropped and the model's entities it displaced stand (a model
   PERSON is then kept unlinked, with a fallback id, as a PERSON the table
   does not know is). A knight's title before a first name only one person
   in the table has links it ("Sir Keir"; FIRST_NAME_TITLES).
"""
import functools

from transforms.moderation import knowledge_graph
from transforms.moderation.knowledge_graph import FIRST_NAME
from transforms.moderation.knowledge_graph import resolve

PERSON = 'PERSON'
MOSTLY_A_WORD = 0.5
# Titles written before a first name alone ("Sir Keir", "Dame Judi"); other
# titles before one are someone else's ("Prince Edward").
FIRST_NAME_TITLES = frozenset({'sir', 'dame'})
_OPENERS = frozenset('"\'([{“‘«*-—–#@')
_ENDERS = frozenset('.!?…:;')
_NOT_NAMES = frozenset({"'s", '\u2019s', "'", '\u2019', '.'})


def _starts_sentence(doc, i):
  """Whether token i opens a sentence (after quotes or brackets that may
  open it), so that its capital letter says nothing. No parser is loaded:
  sentence ends are the punctuation before."""
  j = i - 1
  while j >= 0 and doc[j].text in _OPENERS:
    j -= 1
  return j < 0 or doc[j].is_space or (
      doc[j].is_punct and any(ch in _ENDERS for ch in doc[j].text))


def _cased(text):
  """A comment written in both cases (not all lower, not all capitals)."""
  return text.lower() != text and text.upper() != text


class _Mention(object):
  """An alias match: tokens [start, end) name the person, [first, end) with
  the titles before."""
  __slots__ = ('start', 'end', 'first', 'candidates', 'titled', 'share',
               'needs', 'evidence', 'model_person', 'displaced')

  def __init__(self, start, end, first, candidates, titled, share):
    self.start, self.end, self.first = start, end, first
    self.candidates = candidates
    self.titled = titled
    self.share = share        # its words' lower-case share, if all common
    self.needs = False        # needs evidence before it may count
    self.evidence = 'person' if titled else None  # or 'other'
    self.model_person = False  # the model has a PERSON span over it
    self.displaced = []        # model entities it took the place of

  def __len__(self):
    return self.end - self.first


class AliasMatcher(object):
  """Recognition and linking over one spaCy vocabulary and one table; built
  once per process (entities.load_local_backend)."""

  def __init__(self, nlp, table, common_words):
    from spacy.matcher import PhraseMatcher
    self._table = table
    self._titles = table.titles
    self._skippable = table.titles | knowledge_graph.MODIFIERS
    self._common = common_words
    forms = set(table.keys())
    for person in table.people:
      for name in person.names():
        plain = knowledge_graph.strip_accents(name)
        forms.update({name, plain, name.replace("'", '\u2019'), name.upper(),
                      plain.upper()})
    # One match label per form, resolved once here: a match needs no
    # normalising, and its word share is known.
    self._matcher = PhraseMatcher(nlp.vocab, attr='LOWER')
    self._forms = {}
    seen = set()
    for doc in nlp.tokenizer.pipe(sorted(forms)):
      lowered = tuple(token.lower_ for token in doc)
      candidates = table.candidates(doc.text)
      if not candidates or lowered in seen:
        continue
      seen.add(lowered)
      label = 'alias:' + doc.text
      self._forms[nlp.vocab.strings.add(label)] = (candidates,
                                                   self._word_share(doc))
      self._matcher.add(label, [doc])
    self._fallback = functools.lru_cache(maxsize=1 << 16)(
        lambda text, label: knowledge_graph.fallback_id(
            text, label, self._titles))
    self._person_candidates = functools.lru_cache(maxsize=1 << 16)(
        table.candidates)

  def _title_start(self, doc, start):
    """Where the titles and modifiers before token `start` begin ("former
    Vice President", "Dr ." in capitals), and whether a title is among
    them."""
    first, titled = start, False
    i = start - 1
    while i >= 0:
      word = doc[i].lower_.rstrip('.')
      if doc[i].text == '.' and i > 0 and len(doc[i - 1]) <= 4 and (
          doc[i - 1].lower_ in self._titles):  # "MR ." in capitals, not
        i -= 1                                # "... the president. Obama"
        continue
      if word not in self._skippable:
        break
      titled = titled or word in self._titles
      first = i
      i -= 1
    return (first, True) if titled else (start, False)

  def _mentions(self, doc, matches):
    """Alias mentions, widened over titles, longest first where they
    overlap."""
    found = []
    for label, start, end in matches:
      candidates, share = self._forms[label]
      first, titled = self._title_start(doc, start)
      found.append(_Mention(start, end, first, candidates, titled, share))
    # The longest name first, then the longest with its titles: "king
    # charles" beats "(king) charles".
    found.sort(key=lambda m: (m.start - m.end, -len(m), m.first))
    taken, mentions = set(), []
    for m in found:
      if taken.isdisjoint(range(m.first, m.end)):
        taken.update(range(m.first, m.end))
        mentions.append(m)
    return mentions

  def _word_share(self, tokens):
    """How often a form's words are ordinary words (the largest share of
    its words), or None if any word is not a common word."""
    shares = []
    for token in tokens:
      word = token.lower_
      if word in knowledge_graph.MODIFIERS or token.is_punct:
        continue
      share = self._common.get(word)
      if share is None:
        return None
      shares.append(share)
    return max(shares) if shares else None

  def _name_like_beyond(self, doc, ent, named):
    """Whether the model's span has name-like words beyond the people the
    table names in it (`named`: the tokens of mentions, titles included,
    that are more than a first name), so that it names something else
    ("Jane Merkel", "The Washington Post", not "Biden vs Bernie"):
    capitalised words mid-sentence, or words that are not common words
    ("Jane" opening a sentence; not "Photo", "TV"); never titles or
    possessives."""
    for i in range(ent.start, ent.end):
      token = doc[i]
      word = token.lower_
      if (i in named or token.is_punct or word in _NOT_NAMES or
          token.is_lower or word.rstrip('.') in self._skippable):
        continue
      if word not in self._common or (
          token.is_title and not _starts_sentence(doc, i)):
        return True
    return False

  def _merge(self, doc, mentions, cased):
    """Rule 1 (spans): returns the model entities that stand beside the
    mentions; marks what the model says about each mention."""
    kept = []
    named = {i for m in mentions for i in range(m.first, m.end)
             if any(c.tier < FIRST_NAME for c in m.candidates)}
    for ent in doc.ents:
      inside = [m for m in mentions if m.candidates and
                ent.start < m.end and ent.end > m.first]
      longer = all(ent.start <= m.first and ent.end >= m.end and
                   len(ent) > len(m) for m in inside)
      if not inside or (longer and (
          (ent.label_ == PERSON and self._person_candidates(ent.text)) or
          (cased and self._name_like_beyond(doc, ent, named)))):
        for m in inside:
          m.candidates = ()  # the model's longer span names someone else
        kept.append(ent)
        continue
      for m in inside:
        m.displaced.append(ent)
        if ent.label_ == PERSON:
          m.model_person = True
        elif ent.start == m.start and ent.end == m.end:
          m.evidence = m.evidence or 'other'
    return kept

  def _case_rule(self, doc, mentions, cased):
    """Rule 2: marks the mentions that need evidence, and the evidence the
    words around them give."""
    for m in mentions:
      share = m.share
      if m.titled or not m.candidates or share is None:
        continue
      written = doc[m.start:m.end].text
      if written.islower():
        m.needs = True
        if not cased and m.model_person:
          m.evidence = 'person'
      elif share >= MOSTLY_A_WORD and (
          not cased or written.isupper() or _starts_sentence(doc, m.start)):
        m.needs = True
        possessive = m.end < len(doc) and doc[m.end].lower_ in _NOT_NAMES
        if m.model_person or (possessive and doc[m.end].text != '.'):
          m.evidence = 'person'
    for m in mentions:
      if m.model_person and not m.needs:
        m.evidence = 'person'

  def _link(self, doc, m, context):
    """Rule 3: the mention's url, or None."""
    if m.needs and m.evidence != 'person' and not any(
        c.url in context for c in m.candidates):
      return None
    url = resolve(m.candidates, context, m.evidence)
    if url is None and m.titled and (
        doc[m.start - 1].lower_.rstrip(".") in FIRST_NAME_TITLES):
      firsts = [c for c in m.candidates
                if c.tier == FIRST_NAME and c.person]
      if len(firsts) == 1:
        url = firsts[0].url
    return url

  def entities(self, doc):
    """[(name, canonical_id, label)] in text order: the merged mentions and
    model entities, linked."""
    matches = self._matcher(doc)
    if not matches:  # most comments: the model's entities alone
      return [self._model_entity(ent, frozenset()) for ent in doc.ents]
    cased = _cased(doc.text)
    mentions = self._mentions(doc, matches)
    kept = self._merge(doc, mentions, cased)
    mentions = [m for m in mentions if m.candidates]
    self._case_rule(doc, mentions, cased)
    context = {knowledge_graph.unambiguous(m.candidates) for m in mentions
               if not m.needs or m.evidence == 'person'}
    context.discard(None)
    out, taken, displaced = [], set(), []
    for m in mentions:
      url = self._link(doc, m, context)
      name = doc[m.start:m.end].text
      if url is not None and url in self._table.person_urls:
        out.append((m.start, (name, url, PERSON)))
      elif m.model_person and url is None:
        out.append((m.start, (name, self._fallback(name, PERSON), PERSON)))
      else:
        displaced.extend(m.displaced)
        continue
      taken.update(range(m.first, m.end))
    for ent in displaced:  # they stand again where no mention is left
      if ent not in kept and taken.isdisjoint(range(ent.start, ent.end)):
        kept.append(ent)
    out.extend((ent.start, self._model_entity(ent, context)) for ent in kept)
    out.sort(key=lambda e: e[0])
    return [e for _, e in out]

  def _model_entity(self, ent, context):
    """(name, canonical_id, label) of a model entity that stands: a PERSON
    linked through the table if it can be, else a fallback id."""
    text, label = ent.text, ent.label_
    url = None
    if label == PERSON:
      found = self._person_candidates(text)
      url = resolve(found, context, 'person') if found else None
      if url not in self._table.person_urls:
        url = None
    return text, url or self._fallback(text, label), label
