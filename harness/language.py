"""A local stand-in for Cloud Natural Language (LanguageService v1 over gRPC).

There is no official emulator, so this serves the real API surface
(`google.cloud.language.v1.LanguageService/AnalyzeEntities`, the protos of
google-cloud-language) from recorded responses; the real client talks to it
through an insecure channel. Failures are scripted per text: a list of gRPC
status names consumed one call at a time ('OK' serves the recorded
response), e.g. ['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'OK'].

  from harness.language import language_server  # noqa: F401
"""
import collections
import concurrent.futures
import threading
import time

import grpc
import pytest
from google.cloud import language_v1

SERVICE = 'google.cloud.language.v1.LanguageService'
BOOK_SENTENCE = 'Has President Obama been to Paris?'


def _entity(name, type_, wikipedia_url=None, mid=None, salience=0.5):
  metadata = {}
  if wikipedia_url:
    metadata['wikipedia_url'] = wikipedia_url
  if mid:
    metadata['mid'] = mid
  return language_v1.Entity(
      name=name, type_=type_, metadata=metadata, salience=salience,
      mentions=[language_v1.EntityMention(
          text=language_v1.TextSpan(content=name),
          type_=language_v1.EntityMention.Type.PROPER)])


def recorded_responses():
  """text -> AnalyzeEntitiesResponse, shaped like the API's answers."""
  person = language_v1.Entity.Type.PERSON
  location = language_v1.Entity.Type.LOCATION
  other = language_v1.Entity.Type.OTHER
  return {
      BOOK_SENTENCE: language_v1.AnalyzeEntitiesResponse(
          entities=[
              _entity('Obama', person,
                      'https://en.wikipedia.org/wiki/Barack_Obama',
                      '/m/02mjmr', 0.83),
              _entity('Paris', location,
                      'https://en.wikipedia.org/wiki/Paris', '/m/05qtj',
                      0.17)],
          language='en'),
      'Barack Obama and my cousin Jim talked about the weather.':
          language_v1.AnalyzeEntitiesResponse(
              entities=[
                  _entity('Barack Obama', person,
                          'https://en.wikipedia.org/wiki/Barack_Obama',
                          '/m/02mjmr'),
                  _entity('Jim', person),           # no link: ''
                  _entity('weather', other)],
              language='en'),
      'Angela Merkel visited.': language_v1.AnalyzeEntitiesResponse(
          entities=[_entity('Angela Merkel', person, mid='/m/0jdx')],
          language='en'),
  }


class LanguageStandIn(object):
  """The servicer: recorded responses, scripted failures, a call log."""

  def __init__(self):
    self.responses = recorded_responses()
    self.script = {}     # text -> list of status names, consumed per call
    self.delay_s = {}    # text -> seconds to sleep before answering
    self.calls = collections.Counter()
    self._lock = threading.Lock()

  def reset(self):
    with self._lock:
      self.script.clear()
      self.delay_s.clear()
      self.calls.clear()

  def analyze_entities(self, request, context):
    text = request.document.content
    with self._lock:
      self.calls[text] += 1
      steps = self.script.get(text)
      outcome = steps.pop(0) if steps else 'OK'
    if self.delay_s.get(text):
      time.sleep(self.delay_s[text])
    if outcome != 'OK':
      context.abort(getattr(grpc.StatusCode, outcome), f'scripted {outcome}')
    return self.responses.get(
        text, language_v1.AnalyzeEntitiesResponse(language='en'))


def start(stand_in):
  """Serves `stand_in` on a free local port; returns (server, 'host:port')."""
  server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16))
  handler = grpc.method_handlers_generic_handler(SERVICE, {
      'AnalyzeEntities': grpc.unary_unary_rpc_method_handler(
          stand_in.analyze_entities,
          request_deserializer=language_v1.AnalyzeEntitiesRequest.deserialize,
          response_serializer=(
              language_v1.AnalyzeEntitiesResponse.serialize)),
  })
  server.add_generic_rpc_handlers((handler,))
  port = server.add_insecure_port('127.0.0.1:0')
  server.start()
  return server, f'127.0.0.1:{port}'


@pytest.fixture(scope='module')
def language_server():
  """Yields (stand_in, 'host:port'); the stand-in is reset for each use."""
  stand_in = LanguageStandIn()
  server, endpoint = start(stand_in)
  try:
    yield stand_in, endpoint
  finally:
    server.stop(grace=None)


def linking_responses(items):
  """text -> AnalyzeEntitiesResponse for the labelled linking set
  (harness.linking_set): what Cloud NL would answer if it found exactly the
  gold mentions, with its metadata in every shape the backend must map:
  plain, percent-encoded and mobile Wikipedia URLs, a mid the table does not
  know, or nothing at all (then the alias table links the name). The places
  and things a comment names come back with their own types and URLs. So a
  benchmark over these answers measures the backend's id mapping and its
  fallback to the table, not Google's recognition."""
  import hashlib
  import urllib.parse
  person = language_v1.Entity.Type.PERSON
  out = {}
  for item in items:
    entities = []
    for mention in item['mentions']:
      title = mention['id'].rsplit('/wiki/', 1)[1]
      digest = hashlib.sha256(
          (item['text'] + mention['name']).encode()).digest()
      shape = digest[0] % 20
      mid = '/m/0' + digest[1:4].hex()
      if shape < 11:
        entities.append(_entity(mention['name'], person, mention['id'], mid))
      elif shape < 13:
        entities.append(_entity(
            mention['name'], person, 'https://en.wikipedia.org/wiki/' +
            urllib.parse.quote(title)))
      elif shape < 14:
        entities.append(_entity(
            mention['name'], person, 'http://en.m.wikipedia.org/wiki/' +
            title))
      elif shape < 17:
        entities.append(_entity(mention['name'], person, mid=mid))
      else:
        entities.append(_entity(mention['name'], person))
    for thing in item['others']:
      entities.append(_entity(
          thing['name'], language_v1.Entity.Type[thing['type']],
          thing['url'] or None))
    out[item['text']] = language_v1.AnalyzeEntitiesResponse(
        entities=entities, language='en')
  return out
