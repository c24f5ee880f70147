"""The alias table's keys and the rule that resolves shared names."""
import pytest

from transforms.moderation import knowledge_graph
from transforms.moderation.knowledge_graph import AliasTable
from transforms.moderation.knowledge_graph import Person

W = knowledge_graph.WIKIPEDIA_PREFIX


def _table(*people):
  return AliasTable(people)


def test_every_person_is_reachable_by_name_first_last_and_surname():
  table = _table(Person('James_K._Polk'), Person('Charles_de_Gaulle'),
                 Person('Osama_bin_Laden', ('Bin Laden',)))
  for mention in ('James K. Polk', 'James Polk', 'Polk', 'President Polk',
                  "Polk's"):
    assert table.link(mention) == W + 'James_K._Polk'
  assert table.link('General de Gaulle') == W + 'Charles_de_Gaulle'
  assert table.link('Gaulle') is None  # the particle belongs to the surname
  assert table.link('bin Laden') == W + 'Osama_bin_Laden'


def test_short_surnames_and_epithets_are_no_keys():
  table = _table(Person('Malcolm_X'), Person('Kim_Jong_Un'),
                 Person('Alexander_the_Great'))
  assert table.link('X') is None
  assert table.link('Un') is None
  assert table.link('Great') is None
  assert table.link('Alexander the Great') == W + 'Alexander_the_Great'


def test_a_shared_name_resolves_by_context_then_tier_and_priority():
  table = _table(Person('George_W._Bush', ('Bush',)),
                 Person('George_H._W._Bush'),
                 Person('Bill_Clinton'), Person('Hillary_Clinton'))
  hw = W + 'George_H._W._Bush'
  # An explicit alias (tier 0) beats an implied surname (tier 2) ...
  assert table.link('Bush') == W + 'George_W._Bush'
  # ... unless the comment names the other one unambiguously.
  assert table.link('Bush', context={hw}) == hw
  # Two implied surnames: nobody, unless the context says who.
  assert table.link('Clinton') is None
  assert table.link('Clinton', context={W + 'Hillary_Clinton'}) == (
      W + 'Hillary_Clinton')
  # Both in context: back to the table's rule (still a tie: nobody).
  assert table.link('Clinton', context={W + 'Bill_Clinton',
                                        W + 'Hillary_Clinton'}) is None


def test_row_priority_breaks_ties_within_a_tier():
  table = _table(Person('Bill_Clinton', priority=1), Person('Hillary_Clinton'))
  assert table.link('Clinton') == W + 'Bill_Clinton'
  assert table.link('Clinton', context={W + 'Hillary_Clinton'}) == (
      W + 'Hillary_Clinton')


def test_aliases_people_share_at_the_same_strength_link_to_nobody():
  table = _table(Person('A_B', ('X',)), Person('C_D', ('X',)))
  assert table.link('X') is None
  assert table.link('X', context={W + 'C_D'}) == W + 'C_D'


def test_first_names_link_only_by_context():
  table = _table(Person('Angela_Merkel'), Person('Elton_John'),
                 Person('John_Lennon'), Person('John_Adams'))
  assert table.link('Angela') is None
  assert table.link('Angela', context={W + 'Angela_Merkel'}) == (
      W + 'Angela_Merkel')
  # "John" is Elton John's surname, but others' first name: nobody alone.
  assert table.link('John') is None
  assert table.link('John', context={W + 'John_Lennon'}) == W + 'John_Lennon'
  assert table.link('John', context={W + 'Elton_John'}) == W + 'Elton_John'


def test_places_and_things_compete_with_people():
  table = _table(Person('George_Washington'),
                 Person('Washington,_D.C.', ('Washington',), type='LOCATION'),
                 Person('Nikola_Tesla'),
                 Person('Tesla,_Inc.', ('Tesla',), type='ORGANIZATION'))
  place = W + 'Washington,_D.C.'
  assert table.link('Washington') == place          # tier 0 beats a surname
  assert table.link('Washington', context={W + 'George_Washington'}) == (
      W + 'George_Washington')
  assert table.link('Washington', evidence='person') == (
      W + 'George_Washington')                      # "President Washington"
  assert table.link('Tesla', evidence='other') == W + 'Tesla,_Inc.'
  assert W + 'Tesla,_Inc.' not in table.person_urls
  # A place is no person: Cloud NL's name fallback never gives it.
  assert table.canonical_id(name='Tesla') == W + 'Nikola_Tesla'


def test_cloud_nl_ids_map_to_the_tables():
  table = _table(Person('Gerhard_Schröder', mid='/m/0abc'))
  url = W + 'Gerhard_Schröder'
  assert knowledge_graph.wikipedia_id(
      'http://en.m.wikipedia.org/wiki/Gerhard_Schr%C3%B6der') == url
  assert knowledge_graph.wikipedia_id(
      'https://en.wikipedia.org/wiki/gerhard_Schröder') == url
  assert knowledge_graph.wikipedia_id('https://de.wikipedia.org/wiki/X') == (
      'https://de.wikipedia.org/wiki/X')
  assert table.canonical_id(wikipedia_url=W + 'Paris', mid='/m/0abc') == (
      W + 'Paris')                                  # the URL first
  assert table.canonical_id(mid='/m/0abc') == url   # a mid the table knows
  assert table.canonical_id(mid='/m/0zzz', name='Schroder') == url
  assert table.canonical_id(mid='/m/0zzz', name='Jim') == '/m/0zzz'
  assert table.canonical_id(name='Jim') == ''


def test_title_words_replace_or_extend_the_defaults():
  assert knowledge_graph.title_words(['Dr.', 'Herr']) == {'dr', 'herr'}
  extended = knowledge_graph.title_words(['+taoiseach', 'monsieur'])
  assert {'president', 'taoiseach', 'monsieur'} <= extended
  for bad in (['prime minister'], ['3rd'], []):
    with pytest.raises(ValueError):
      knowledge_graph.title_words(bad)
  table = AliasTable([Person('Leo_Varadkar')], titles={'monsieur'})
  assert table.link('Monsieur Varadkar') == W + 'Leo_Varadkar'
  assert table.link('President Varadkar') is None
