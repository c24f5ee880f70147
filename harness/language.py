"""A local stand-in for Cloud Natural Language (LanguageService v1 over gRPC).

There is no official emulator, so this serves the real API surface
(`google.cloud.language.v1.LanguageService/AnalyzeEntities`, the protos of
google-cloud-language) from recorded responses; the real client talks to it
through an insecure channel. Failures are scripted per text: a list of gRPC
status names consumed one call at a time ('OK' serves the recorded
response), e.g. ['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'OK']; or for the
whole service: an outage (`fail_for(code, seconds)`: every call fails with
`code` meanwhile), a quota (`quota_per_s`: calls beyond it within a second
get RESOURCE_EXHAUSTED, as the real API answers) and slow answers
(`slow_s`). `call_times` keeps when each call arrived.

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
    self.call_times = []
    self.quota_per_s = None
    self.slow_s = 0.0
    self._outage = None   # [status name, seconds, first call's time]
    self._lock = threading.Lock()

  def reset(self):
    with self._lock:
      self.script.clear()
      self.delay_s.clear()
      self.calls.clear()
      self.call_times.clear()
      self.quota_per_s = None
      self.slow_s = 0.0
      self._outage = None

  def fail_for(self, code, seconds):
    """Every call fails with status `code` for `seconds` from the next
    call on."""
    self._outage = [code, seconds, None]

  def _service_outcome(self, now):
    """A failure of the whole service at `now`, or None (lock held)."""
    if self._outage:
      code, seconds, started = self._outage
      if started is None:
        self._outage[2] = started = now
      if now < started + seconds:
        return code
    if self.quota_per_s is not None:
      recent = [t for t in self.call_times[-(int(self.quota_per_s) + 1):]
                if t > now - 1.0]
      if len(recent) > self.quota_per_s:
        return 'RESOURCE_EXHAUSTED'
    return None

  def analyze_entities(self, request, context):
    text = request.document.content
    with self._lock:
      now = time.monotonic()
      self.calls[text] += 1
      self.call_times.append(now)
      steps = self.script.get(text)
      outcome = (self._service_outcome(now) or
                 (steps.pop(0) if steps else 'OK'))
    delay = self.delay_s.get(text, 0.0) + self.slow_s
    if delay:
      time.sleep(delay)
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
