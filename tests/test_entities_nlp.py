"""The Cloud NL backend: the real google-cloud-language client over gRPC
against a local LanguageService stand-in (recorded responses, scripted
failures)."""
import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from pipelines import moderate
from harness.language import BOOK_SENTENCE
from harness.language import language_server  # noqa: F401  pylint: disable=unused-import
from harness.moderation_fixtures import comment
from harness.moderation_fixtures import keyed
from transforms.dead_letter import DEAD_LETTER
from transforms.moderation.entities import CloudNlEntityFn
from transforms.moderation.entities import ExtractEntities

OBAMA = 'https://en.wikipedia.org/wiki/Barack_Obama'
JIM = 'Barack Obama and my cousin Jim talked about the weather.'


def _fn(endpoint, types=('PERSON',), **kwargs):
  kwargs.setdefault('initial_backoff_s', 0.01)
  fn = CloudNlEntityFn(types, endpoint=endpoint, insecure=True, **kwargs)
  fn.setup()
  return fn


def test_the_books_sentence_parses_like_the_notebook(language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  fn = _fn(endpoint)
  [entities] = fn.annotate([BOOK_SENTENCE])
  assert [(e['name'], e['canonical_id']) for e in entities] == [
      ('Obama', OBAMA), ('Paris', 'https://en.wikipedia.org/wiki/Paris')]
  [entities] = fn.annotate([JIM])
  assert [(e['name'], e['canonical_id'], e['type']) for e in entities] == [
      ('Barack Obama', OBAMA, 'PERSON'), ('Jim', '', 'PERSON'),
      ('weather', '', 'OTHER')]
  # No URL, and a mid the built-in table does not know: the alias table
  # links the name, to the id the local backend gives too.
  [entities] = fn.annotate(['Angela Merkel visited.'])
  assert entities[0]['canonical_id'] == (
      'https://en.wikipedia.org/wiki/Angela_Merkel')
  fn.teardown()


def test_ids_map_to_the_alias_tables(language_server, tmp_path):
  # A user's table: its mid names Merkel's row; an unknown mid, with a name
  # nobody's table knows, stays the mid; URLs come back in the table's form.
  stand_in, endpoint = language_server
  stand_in.reset()
  from google.cloud import language_v1
  from harness.language import _entity  # pylint: disable=protected-access
  person = language_v1.Entity.Type.PERSON
  stand_in.responses['ids'] = language_v1.AnalyzeEntitiesResponse(entities=[
      _entity('Schroeder', person,
              'http://en.m.wikipedia.org/wiki/Gerhard_Schr%C3%B6der'),
      _entity('the chancellor', person, mid='/m/0jdx'),
      _entity('Some Body', person, mid='/m/0zzzz'),
      _entity('Clinton', person),   # two people in the table: nobody
  ])
  table = tmp_path / 'people.jsonl'
  table.write_text(
      '{"wikipedia_title": "Angela_Merkel", "mid": "/m/0jdx"}\n'
      '{"wikipedia_title": "Gerhard_Schröder"}\n'
      '{"wikipedia_title": "Bill_Clinton"}\n'
      '{"wikipedia_title": "Hillary_Clinton"}\n')
  [entities] = _fn(endpoint, alias_table=str(table)).annotate(['ids'])
  assert [e['canonical_id'] for e in entities] == [
      'https://en.wikipedia.org/wiki/Gerhard_Schröder',
      'https://en.wikipedia.org/wiki/Angela_Merkel', '/m/0zzzz', '']


def test_a_person_without_metadata_is_linked_with_the_comments_context(
    language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  from google.cloud import language_v1
  from harness.language import _entity  # pylint: disable=protected-access
  person = language_v1.Entity.Type.PERSON
  stand_in.responses['context'] = language_v1.AnalyzeEntitiesResponse(
      entities=[_entity('Hillary Clinton', person,
                        'https://en.wikipedia.org/wiki/Hillary_Clinton'),
                _entity('Clinton', person),
                _entity('Jordan', language_v1.Entity.Type.LOCATION)])
  [entities] = _fn(endpoint).annotate(['context'])
  assert [e['canonical_id'] for e in entities] == [
      'https://en.wikipedia.org/wiki/Hillary_Clinton',
      'https://en.wikipedia.org/wiki/Hillary_Clinton', '']


def test_dofn_instances_of_one_endpoint_share_one_client(language_server):
  # The DirectRunner sets up a fresh DoFn copy for every streaming bundle:
  # each would otherwise open a gRPC channel of its own.
  stand_in, endpoint = language_server
  stand_in.reset()
  first, second = _fn(endpoint), _fn(endpoint)
  assert first._client is second._client  # pylint: disable=protected-access
  assert first.annotate([JIM]) == second.annotate([JIM])
  first.teardown()
  second.teardown()


def test_quota_and_unavailable_errors_are_retried_then_succeed(
    language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  stand_in.script[BOOK_SENTENCE] = ['UNAVAILABLE', 'RESOURCE_EXHAUSTED',
                                    'UNAVAILABLE']
  [entities] = _fn(endpoint, max_attempts=4).annotate([BOOK_SENTENCE])
  assert entities[0]['canonical_id'] == OBAMA
  assert stand_in.calls[BOOK_SENTENCE] == 4


def test_failures_after_retries_and_permanent_errors_are_returned(
    language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  stand_in.script[BOOK_SENTENCE] = ['UNAVAILABLE'] * 10
  stand_in.script[JIM] = ['INVALID_ARGUMENT']
  results = _fn(endpoint, max_attempts=3).annotate([BOOK_SENTENCE, JIM])
  assert 'UNAVAILABLE' in str(results[0].grpc_status_code)
  assert 'INVALID_ARGUMENT' in str(results[1].grpc_status_code)
  assert stand_in.calls[BOOK_SENTENCE] == 3   # all attempts used
  assert stand_in.calls[JIM] == 1             # not retryable


def test_each_call_has_a_timeout(language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  stand_in.delay_s[BOOK_SENTENCE] = 2.0
  [result] = _fn(endpoint, max_attempts=2, timeout_s=0.5).annotate(
      [BOOK_SENTENCE])
  assert 'DEADLINE_EXCEEDED' in str(result.grpc_status_code)
  # Both attempts timed out (the error names the last one). The stand-in
  # counts a call only once its handler runs, which an attempt whose
  # deadline passed on the way (a busy machine) never reaches.
  assert '(attempt 2,' in result.message
  assert stand_in.calls[BOOK_SENTENCE] in (1, 2)


def test_requests_of_a_bundle_run_concurrently(language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  texts = [f'comment {i}' for i in range(8)]
  for t in texts:
    stand_in.delay_s[t] = 0.5
  import time
  start = time.monotonic()
  _fn(endpoint, concurrency=8).annotate(texts)
  assert time.monotonic() - start < 2.0  # serial would take 4 s


def test_api_failures_go_to_the_dead_letter_with_the_raw_comment(
    language_server):
  stand_in, endpoint = language_server
  stand_in.reset()
  ok = comment('c1', 'u', 0, text=BOOK_SENTENCE)
  bad = comment('c2', 'u', 1, text=JIM)
  stand_in.script[JIM] = ['PERMISSION_DENIED']
  p = TestPipeline(options=PipelineOptions(runner='FnApiRunner'))
  out = (p | beam.Create([keyed(ok), keyed(bad)])
         | ExtractEntities('nlp', ['PERSON'], endpoint=endpoint,
                           insecure=True, initial_backoff_s=0.01))
  assert_that(out.comments | beam.Map(
      lambda kv: (kv[1]['comment_id'],
                  [e['canonical_id'] for e in kv[1]['entities']])),
      equal_to([('c1', [OBAMA])]), label='comments')
  assert_that(out[DEAD_LETTER] | beam.Map(
      lambda d: (d['key'], d['stage'], d['reason'], d['raw'])),
      equal_to([('c2', 'entities', 'api_failure', bad['raw'])]),
      label='dead')
  p.run().wait_until_finish()


def test_pipeline_with_nlp_backend(language_server, tmp_path):
  stand_in, endpoint = language_server
  stand_in.reset()
  stand_in.script['Angela Merkel visited.'] = ['UNAVAILABLE'] * 5
  lines = [
      {'comment_id': 'a', 'commenter_id': 'u', 'text': BOOK_SENTENCE,
       'timestamp': '2024-05-01T10:00:00Z'},
      {'comment_id': 'b', 'commenter_id': 'u', 'text': JIM,
       'timestamp': '2024-05-01T11:00:00Z'},
      {'comment_id': 'c', 'commenter_id': 'u', 'text': JIM,
       'timestamp': '2024-05-03T11:00:00Z'},
      {'comment_id': 'd', 'commenter_id': 'u',
       'text': 'Angela Merkel visited.', 'timestamp': '2024-05-03T12:00:00Z'},
  ]
  (tmp_path / 'in.jsonl').write_text(
      '\n'.join(json.dumps(l) for l in lines) + '\n')
  out = str(tmp_path / 'out')
  assert moderate.run([
      '--input', str(tmp_path / 'in.jsonl'), '--output', out,
      '--entity_backend', 'nlp', '--nlp_endpoint', endpoint,
      '--nlp_insecure', '--nlp_max_attempts', '3',
      '--nlp_initial_backoff', '0.01']) == 0
  decisions = {json.loads(l)['comment_id']: json.loads(l)
               for l in open(next(tmp_path.glob('out-decisions-*')))}
  dead = [json.loads(l) for l in open(next(tmp_path.glob('out-dead_letters*')))]
  assert {k: d['decision'] for k, d in decisions.items()} == {
      'a': 'allow', 'b': 'reject', 'c': 'allow'}
  assert decisions['b']['blocked_by'] == [OBAMA]
  assert [(d['key'], d['reason']) for d in dead] == [('d', 'api_failure')]
  assert json.loads(dead[0]['raw']) == lines[3]
