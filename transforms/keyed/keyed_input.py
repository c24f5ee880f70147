"""Keyed, validated chunks of records: the hot-path input of the model jobs.

batch_predict and two_phase take sharded inputs to a model the same way,
declared once here so the two jobs keep the same rules, dead letters and
speed:

  read (files by byte range, or any source) -> chunks of records
    -> key and validate, a chunk at a time (one step, fused with the read)
    -> chunks of valid (key, record)
  repeated keys (only digests of keys travel to find them) -> a side path:
    grouped, one record kept per key, validated -> chunks of their own

The repeated keys' digests reach the keying step as a side input, which
every worker holds in memory (a few dozen bytes per repeated key): right while repeats
are the exception, as client keys are meant to be unique. An input made
mostly of repeats would rather take DeduplicateKeys alone (records shuffled
per key).
"""
import dataclasses
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.config_error import ConfigError
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import Routed
from transforms.dead_letter import reject
from transforms.io import bigquery
from transforms.io import line_ranges
from transforms.io import sources
from transforms.keyed import features
from transforms.keyed import keys
from transforms.record_chunks import DEFAULT_CHUNK_SIZE
from transforms.record_chunks import ChunkRecords

DUPLICATED = 'duplicated'


@dataclasses.dataclass(frozen=True)
class KeyedInputConfig:
  """Where records come from and how they are keyed and checked.

  patterns, input_format: file patterns (local or gs://) of one format
    (transforms.io.sources.FORMATS); or table / query: a BigQuery read,
    one record per row.
  key_rule: a keys.KeyRule.
  check_duplicates: keep one record per repeated key (the others are
    dead letters); False skips the check (keys known to be unique).
  max_text_bytes: longer texts are dead letters.
  chunk_size: records per chunk (one model batch).
  local: the job runs on a local runner, where a key count in one
    combiner and a bucketed shuffle are fastest; a distributed runner
    counts and groups per key, so no worker holds more than its share.
  """
  key_rule: keys.KeyRule
  patterns: tuple = ()
  input_format: str | None = None
  table: str | None = None
  query: str | None = None
  check_duplicates: bool = True
  max_text_bytes: int = features.DEFAULT_MAX_TEXT_BYTES
  chunk_size: int = DEFAULT_CHUNK_SIZE
  local: bool = True

  def __post_init__(self):
    if len([s for s in (self.patterns, self.table, self.query) if s]) != 1:
      raise ConfigError('input', 'read exactly one of file patterns, a table '
                        'or a query')
    if self.patterns:
      if self.input_format not in sources.FORMATS:
        raise ConfigError('input_format',
                          f'unknown input format {self.input_format!r}')
      self.key_rule.check_format(self.input_format)
    for name in ('max_text_bytes', 'chunk_size'):
      if getattr(self, name) < 1:
        raise ConfigError(name, 'must be at least 1')

  @property
  def line_files(self):
    return self.input_format in line_ranges.LINE_FORMATS


class KeyedChunks(typing.NamedTuple):
  """KeyedInput's outputs. parts: {label: chunks of valid (key, record)}:
  '' holds the records with a key of their own, ' kept duplicates' the one
  record kept per repeated key; they stay apart so that each is fused with
  the steps after it. dead_letter: every record rejected on the way."""
  parts: dict
  dead_letter: beam.PCollection


# Output type declared: Beam would infer it from the bytecode at every
# pipeline construction (benchmarks/optimisations.md: the costliest inference
# of the job) and find nothing more precise than Any (chunks, tagged outputs).
@beam.typehints.with_output_types(typing.Any)
class _KeyAndValidate(beam.DoFn):
  """A chunk of records -> a chunk of valid (key, record); keyless and
  invalid records are dead letters, records of a repeated key leave one by
  one on DUPLICATED."""

  def __init__(self, rule, checks, max_text_bytes):
    self._rule, self._checks, self._max = rule, checks, max_text_bytes
    self._keyed = Metrics.counter(keys.STAGE, 'keyed')
    self._valid = Metrics.counter(features.STAGE, 'valid')

  def process(self, chunk, duplicates=None):
    out, keyed = [], 0
    for record in chunk:
      key, problem = self._rule.key_of(record)
      if problem:
        yield reject(None, keys.STAGE, 'missing_key', record, problem)
        continue
      keyed += 1
      if duplicates and keys.key_digest(key) in duplicates:
        yield beam.pvalue.TaggedOutput(DUPLICATED, (key, record))
        continue
      problem = features.feature_problem(record, self._checks, self._max)
      if problem:
        yield reject(key, features.STAGE, problem[0], record, problem[1])
        continue
      out.append((key, record))
    self._keyed.inc(keyed)
    if out:
      self._valid.inc(len(out))
      yield out


class KeyAndValidateChunks(beam.PTransform):
  """Chunks of records -> outputs `main` (chunks of valid (key, record)),
  `dead_letter` and `duplicated` ((key, record) whose key is in
  `duplicates`, a PCollection of (keys.key_digest, count); None sends
  nothing there).
  The rules and reasons are keys.KeyRule's and features.feature_problem's,
  as AttachKeys then ValidateFeatures apply them record by record."""

  def __init__(self, rule, input_specs, feature_map, max_text_bytes,
               duplicates=None):
    super().__init__()
    self._fn = _KeyAndValidate(
        rule, features.feature_checks(input_specs, feature_map),
        max_text_bytes)
    self._duplicates = duplicates

  def expand(self, chunks):
    side = ([beam.pvalue.AsDict(self._duplicates)]
            if self._duplicates is not None else [])
    return chunks | beam.ParDo(self._fn, *side).with_outputs(
        DEAD_LETTER, DUPLICATED, main='main')


class ReadChunks(beam.PTransform):
  """PBegin -> Routed(chunks of dict records, dead letters), from the
  config's files or BigQuery read. `quiet`: line files read again without
  counting or dead-lettering (the duplicate-key pass reads keys only)."""

  def __init__(self, config, quiet=False):
    super().__init__()
    self._config, self._quiet = config, quiet

  def expand(self, pbegin):
    c = self._config
    if c.line_files:
      return pbegin | 'Lines' >> line_ranges.ReadLineChunks(
          c.patterns, c.input_format, c.chunk_size, quiet=self._quiet)
    if c.patterns:
      read = pbegin | 'Records' >> sources.ReadRecords(c.patterns,
                                                       c.input_format)
    else:
      read = pbegin | 'Table' >> bigquery.ReadTable(table=c.table,
                                                    query=c.query)
    return Routed(read.main | 'Chunk' >> ChunkRecords(c.chunk_size),
                  read.dead_letter)


class KeyedInput(beam.PTransform):
  """PBegin -> KeyedChunks: the config's records, keyed and checked
  against the signature's inputs (input_specs {name: TensorSpec},
  feature_map {input name: record field})."""

  def __init__(self, config, input_specs, feature_map):
    super().__init__()
    self._config = config
    self._specs, self._feature_map = input_specs, feature_map

  def _duplicate_keys(self, pbegin, read):
    """(key, count) of keys seen more than once. Line files are read a
    second time for their keys alone: records then never wait for (or are
    held until) the check. Other sources share the read, which the runner
    may materialize."""
    c = self._config
    if c.line_files:
      read = pbegin | 'Read keys' >> ReadChunks(c, quiet=True)
    return read.main | 'Find duplicate keys' >> keys.FindDuplicateKeys(
        c.key_rule, in_memory=c.local)

  def expand(self, pbegin):
    c = self._config
    read = pbegin | 'Read' >> ReadChunks(c)
    duplicates = (self._duplicate_keys(pbegin, read)
                  if c.check_duplicates else None)
    checked = read.main | 'Key and validate' >> KeyAndValidateChunks(
        c.key_rule, self._specs, self._feature_map, c.max_text_bytes,
        duplicates)
    dead = [read.dead_letter, checked[DEAD_LETTER]]
    parts = {'': checked.main}
    if duplicates is not None:
      deduped = checked[DUPLICATED] | 'Deduplicate keys' >> (
          keys.DeduplicateKeys(bucketed=c.local))
      kept = deduped.main | 'Validate kept duplicates' >> (
          features.ValidateFeatures(self._specs, self._feature_map,
                                    c.max_text_bytes))
      dead += [deduped.dead_letter, kept.dead_letter]
      parts[' kept duplicates'] = kept.main | 'Chunk kept duplicates' >> (
          ChunkRecords(c.chunk_size))
    return KeyedChunks(parts, dead | 'Dead letters' >> beam.Flatten())
