"""Client keys: where they come from, what makes one usable, each kept once.

Keyed predictions are what make a distributed serving job safe: every output
and every dead letter carries the client's key, so results can be matched to
inputs whatever order (or shard) they come back in. Keys travel as
`(key, record)` tuples from here on; they are strings.

Every rule about keys is here, once: `KeyRule` (a field or a content hash,
what a usable key is), which inputs can carry keys at all, and how repeated
keys are found (FindDuplicateKeys) and resolved (DeduplicateKeys). The
chunked hot path (transforms.keyed.keyed_input) and the per-record path
(AttachKeys: streaming) apply the same rule.
"""
import array
import collections
import dataclasses
import hashlib
import json
import typing
import zlib

import apache_beam as beam
import numpy
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from common.config_error import ConfigError
from transforms.dead_letter import RoutedParDo
from transforms.dead_letter import reject

FROM_FIELD = 'field'
CONTENT_HASH = 'content_hash'
KEY_MODES = (FROM_FIELD, CONTENT_HASH)
STAGE = 'keys'


def canonical_json(record):
  """A stable serialisation: the same record always gives the same bytes."""
  return json.dumps(record, sort_keys=True, ensure_ascii=False,
                    separators=(',', ':'), default=str)


def content_hash_key(record):
  """A deterministic key from the record's content (sha256, 32 hex chars).

  Identical records get identical keys, so exact duplicates are caught by the
  duplicate-key check instead of being predicted twice. A lone surrogate
  (JSON's "\\ud800" decodes to one) is hashed as its code point's bytes,
  not refused: the key is still made from the content.
  """
  return hashlib.sha256(canonical_json(record).encode(
      'utf-8', 'surrogatepass')).hexdigest()[:32]


def _is_text(key):
  """False for a str holding lone surrogates, which no output can carry
  back to the client as UTF-8."""
  if key.isascii():
    return True
  try:
    key.encode('utf-8')
  except UnicodeEncodeError:
    return False
  return True


def field_value(record, field):
  """record[field]; a dotted field (meta.id) not present as such reads the
  nested field, as users of nested records (JSON, Avro, Parquet) expect."""
  value = record.get(field)
  if value is None and '.' in field:
    value = record
    for part in field.split('.'):
      if not isinstance(value, dict):
        return None
      value = value.get(part)
  return value


@dataclasses.dataclass(frozen=True)
class KeyRule:
  """Where a record's client key comes from: `field` (mode 'field'; a
  dotted path reads a nested field), or a hash of the record's content
  (mode 'content_hash'), for clients that did not supply one."""
  field: str = 'key'
  mode: str = FROM_FIELD

  def __post_init__(self):
    if self.mode not in KEY_MODES:
      raise ConfigError('attach_keys', f'unknown key mode {self.mode!r}; one '
                        f'of {KEY_MODES}')

  def key_of(self, record):
    """(key, None) for a record with a usable key, else (None, why not)."""
    if self.mode == CONTENT_HASH:
      return content_hash_key(record), None
    key = field_value(record, self.field)
    if type(key) is str and key.strip() and _is_text(key):  # the common case
      return key, None
    if isinstance(key, bool) or not isinstance(key, (str, int)):
      problem = ('missing' if key is None else
                 f'not a string or integer ({type(key).__name__})')
      return None, f'key field {self.field!r} is {problem}'
    key = str(key)
    if not key.strip():
      return None, f'key field {self.field!r} is empty'
    if not _is_text(key):
      return None, (f'key field {self.field!r} is not valid Unicode text '
                    '(a lone surrogate)')
    return key, None

  def keys_of_chunk(self, chunk):
    """The usable keys of a chunk of records (keyless records are skipped:
    the main pass dead-letters them)."""
    out = []
    for record in chunk:
      key, _ = self.key_of(record)
      if key is not None:
        out.append(key)
    return out

  def check_format(self, input_format):
    """Raises ConfigError when records of `input_format` cannot carry this
    rule's keys (plain text lines have no fields)."""
    if input_format == 'text' and self.mode != CONTENT_HASH:
      raise ConfigError('attach_keys', 'text inputs carry no key field; use '
                        f'--attach_keys {CONTENT_HASH}')


@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _AttachKeys(beam.DoFn):

  def __init__(self, rule):
    self._rule = rule
    self._keyed = Metrics.counter(STAGE, 'keyed')

  def process(self, record):
    key, problem = self._rule.key_of(record)
    if problem:
      yield reject(None, STAGE, 'missing_key', record, problem)
      return
    self._keyed.inc()
    yield key, record


class AttachKeys(beam.PTransform):
  """record -> (key, record) by a KeyRule; records without a usable key
  are dead letters. One record at a time, for streaming (batch jobs key
  chunks: transforms.keyed.keyed_input)."""

  def __init__(self, rule):
    super().__init__()
    self._fn = _AttachKeys(rule)

  def expand(self, records):
    return records | RoutedParDo(self._fn)


# Enough buckets to spread the work after the shuffle over many workers, few
# enough that each bundle sends each bucket a list of many records.
NUM_BUCKETS = 512
# Records a bundle buffers before sending its buckets on: bounds worker memory.
MAX_BUFFERED = 20_000


def key_digest(key):
  """32 bits of a usable key, the same in every process (crc32 of its UTF-8,
  not hash()): what the duplicate-key count holds and ships instead of the
  keys themselves. Keys that share a digest are counted together; their
  records then take the duplicate path, where they are grouped by their
  real key and a record alone under its key is kept: a shared digest costs
  a little work, never a record."""
  return zlib.crc32(key.encode('utf-8'))


def bucket_of(key):
  """A key's bucket: every worker process must agree (key_digest)."""
  return key_digest(key) % NUM_BUCKETS


@beam.typehints.with_output_types(typing.Tuple[int, typing.List[typing.Any]])
class _BufferByBucket(beam.DoFn):
  """(key, record) -> (bucket, [(key, record), ...]), per bundle.

  Why: a GroupByKey costs per element it moves (on the FnApiRunner, several
  coder passes and Python bookkeeping each), and with unique keys, the normal
  case, grouping by client key moves every record alone. Buckets of keys move
  the same records in lists, tens of records per shuffled element; every
  occurrence of a key still meets in one group, so the choice of the kept
  record is unchanged and does not depend on order or sharding. Only for the
  global window (batch): the buffer would otherwise have to track windows,
  and asking Beam for each element's window costs more than the bucketing
  saves.
  """

  def start_bundle(self):
    self._buffer, self._size = collections.defaultdict(list), 0

  def process(self, element):
    self._buffer[bucket_of(element[0])].append(element)
    self._size += 1
    if self._size >= MAX_BUFFERED:
      yield from self.finish_bundle()
      self._buffer, self._size = collections.defaultdict(list), 0

  def finish_bundle(self):
    for bucket, pairs in self._buffer.items():
      yield GlobalWindows.windowed_value((bucket, pairs))


@beam.typehints.with_output_types(typing.Tuple[str, typing.Any])
class _KeepFirst(beam.DoFn):
  """Keeps one record per key; every other occurrence is a dead letter.

  Which one is kept must not depend on input order or sharding, so it is the
  record with the smallest canonical JSON: reruns always keep the same one.
  """

  def __init__(self):
    self._unique = Metrics.counter(STAGE, 'unique')

  def process(self, element):
    _, lists = element  # (bucket or key, [[(key, record), ...], ...])
    by_key = collections.defaultdict(list)
    for pairs in lists:
      for key, record in pairs:
        by_key[key].append(record)
    for key, records in by_key.items():
      if len(records) > 1:
        records.sort(key=canonical_json)
        for duplicate in records[1:]:
          yield reject(key, STAGE, 'duplicate_key', duplicate,
                       f'key {key!r} appears {len(records)} times; kept one')
      self._unique.inc()
      yield key, records[0]


class DeduplicateKeys(beam.PTransform):
  """(key, record) -> one (key, record) per key, duplicates dead-lettered.

  bucketed: in the global window, shuffle records in lists per hash bucket
  instead of one element per record. That is what a local runner's Python
  shuffle needs to be fast; but each bucket's records are then held in
  memory together, so on a distributed runner (whose shuffle is cheap per
  element and whose inputs can be huge) pipelines pass bucketed=False and
  memory stays bounded by the records of one key.
  """

  def __init__(self, bucketed=True):
    super().__init__()
    self._bucketed = bucketed

  def expand(self, keyed):
    if self._bucketed and isinstance(keyed.windowing.windowfn, GlobalWindows):
      lists = keyed | 'Bucket keys' >> beam.ParDo(_BufferByBucket())
    else:
      lists = keyed | 'As lists' >> beam.Map(lambda pair: (pair[0], [pair]))
    return (lists
            | 'Group' >> beam.GroupByKey()
            | 'Keep first' >> RoutedParDo(_KeepFirst()))


class _CountKeyDigests(beam.CombineFn):
  """Occurrences of every key digest, from one array of them (4 bytes a key:
  a local run's keys fit in memory whatever their length; records never
  enter it)."""

  def __init__(self, rule):
    self._rule = rule

  def create_accumulator(self):
    return array.array('I')

  def add_input(self, digests, chunk):
    digests.extend(map(key_digest, self._rule.keys_of_chunk(chunk)))
    return digests

  def merge_accumulators(self, accumulators):
    accumulators = iter(accumulators)
    merged = next(accumulators)
    for digests in accumulators:
      merged.extend(digests)
    return merged

  def extract_output(self, digests):
    values, counts = numpy.unique(numpy.asarray(digests), return_counts=True)
    repeated = counts > 1
    return list(zip(values[repeated].tolist(), counts[repeated].tolist()))


class FindDuplicateKeys(beam.PTransform):
  """Chunks of records -> (key digest, occurrences) for every digest
  (key_digest) seen more than once.

  Only digests of keys travel, not records: the pipeline then lets the
  records of unique keys, nearly all of them, go straight on (fused with
  reading, never shuffled) and sends only the records of these digests
  through DeduplicateKeys, which groups them by their real keys. in_memory:
  count every digest in one array, cheapest for a local runner (4 bytes per
  record, shipped between stages as one buffer); a distributed runner
  counts per digest (a combiner), so no worker holds more than its share.
  """

  def __init__(self, rule, in_memory=True):
    super().__init__()
    self._rule, self._in_memory = rule, in_memory

  def expand(self, chunks):
    rule = self._rule
    if self._in_memory:
      return (chunks
              | 'Count keys' >> beam.CombineGlobally(
                  _CountKeyDigests(rule)).without_defaults()
              | 'Repeated keys' >> beam.FlatMap(lambda pairs: pairs))
    return (chunks
            | 'Keys' >> beam.FlatMap(lambda chunk: [
                (key_digest(k), 1) for k in rule.keys_of_chunk(chunk)])
            | 'Count per key' >> beam.CombinePerKey(sum)
            | 'Repeated keys' >> beam.Filter(lambda pair: pair[1] > 1))
