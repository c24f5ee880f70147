"""Keys and feature checks for chunks of records, in one step.

The hot path of batch serving (pipelines.batch_predict): a chunk of records
(transforms.record_chunks) comes out as a chunk of (key, record) pairs that
can feed the model, with the same rules, reasons and counters as AttachKeys
then ValidateFeatures (it calls their functions, keys.key_of and
features.feature_problem). Records whose key another record also has leave
on the `duplicated` output, one by one, for DeduplicateKeys to pick the one
kept: they are rare, and only they need to meet their namesakes.

The repeated keys arrive as a side input, which every worker holds in memory
(a few dozen bytes per repeated key): right while repeats are the exception,
as client keys are meant to be unique. An input made mostly of repeats would
rather take DeduplicateKeys alone (records shuffled per key).
"""
import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.keyed import features
from transforms.keyed import keys
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject

DUPLICATED = 'duplicated'


class _KeyAndValidate(beam.DoFn):

  def __init__(self, key_field, mode, checks, max_text_bytes):
    self._key_field, self._mode = key_field, mode
    self._checks, self._max = checks, max_text_bytes
    self._keyed = Metrics.counter(keys.STAGE, 'keyed')
    self._valid = Metrics.counter(features.STAGE, 'valid')

  def process(self, chunk, duplicates=None):
    out, keyed = [], 0
    for record in chunk:
      key, problem = keys.key_of(record, self._key_field, self._mode)
      if problem:
        yield reject(None, keys.STAGE, 'missing_key', record, problem)
        continue
      keyed += 1
      if duplicates and key in duplicates:
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
  `duplicates`, a PCollection of (key, count); None sends nothing there).

  key_field, mode: as keys.AttachKeys; input_specs, feature_map,
  max_text_bytes: as features.ValidateFeatures.
  """

  def __init__(self, key_field, mode, input_specs, feature_map,
               max_text_bytes, duplicates=None):
    super().__init__()
    self._fn = _KeyAndValidate(
        key_field, mode, features.feature_checks(input_specs, feature_map),
        max_text_bytes)
    self._duplicates = duplicates

  def expand(self, chunks):
    side = ([beam.pvalue.AsDict(self._duplicates)]
            if self._duplicates is not None else [])
    return chunks | beam.ParDo(self._fn, *side).with_outputs(
        DEAD_LETTER, DUPLICATED, main='main')
