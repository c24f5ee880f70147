"""The chunked hot path of batch serving gives what the per-record transforms
give: same keys, same checks, same dead letters, same duplicates."""
import collections
import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms import window

from models.runtime import predictor
from models.runtime.signatures import TensorSpec
from transforms.keyed import features
from transforms.keyed import keys
from transforms.dead_letter import DEAD_LETTER
from transforms.inference.chunked import RunChunkInference
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.keyed.keyed_input import DUPLICATED
from transforms.keyed.keyed_input import KeyAndValidateChunks
from transforms.record_chunks import ChunkRecords
from transforms.record_chunks import Rechunk
from transforms.record_chunks import Unchunk

SPECS = {'reviews': TensorSpec('string', (-1,)),
         'stars': TensorSpec('float32', (-1,))}
FEATURES = {'reviews': 'text'}
RULE = keys.KeyRule('key', keys.FROM_FIELD)


def _records(seed=0, n=300):
  rng = random.Random(seed)
  records = []
  for i in range(n):
    record = {'key': f'k{rng.randrange(n * 2)}', 'text': f'text {i}',
              'stars': float(i % 5)}
    kind = rng.randrange(12)
    if kind == 0:
      del record['key']
    elif kind == 1:
      record['key'] = ' '
    elif kind == 2:
      record['text'] = ''
    elif kind == 3:
      record['stars'] = 'five'
    elif kind == 4:
      del record['text']
    elif kind == 5:
      record['text'] = 'x' * 50
    records.append(record)
  return records


def _per_record(records, duplicated):
  """What AttachKeys then ValidateFeatures give, record by record (their
  DoFns called directly): (main, duplicated, dead letters)."""
  attach = keys._AttachKeys(RULE)  # pylint: disable=protected-access
  validate = features._ValidateFeatures(SPECS, FEATURES, 20)  # pylint: disable=protected-access
  main, dups, dead = [], [], []
  for record in records:
    for out in attach.process(record):
      if isinstance(out, beam.pvalue.TaggedOutput):
        dead.append(out.value)
      elif out[0] in duplicated:
        dups.append(out)
      else:
        for checked in validate.process(out):
          if isinstance(checked, beam.pvalue.TaggedOutput):
            dead.append(checked.value)
          else:
            main.append(checked)
  return main, dups, dead


def _at_most(size):
  def check(sizes):
    assert sizes and max(sizes) <= size, sizes
  return check


def _pair(kv):
  return kv[0], repr(sorted(kv[1].items()))


def _dead(d):
  return d['key'], d['stage'], d['reason'], d.get('error'), repr(d['raw'])


def test_key_and_validate_chunks_match_attach_keys_then_validate():
  records = _records()
  seen = collections.Counter(r.get('key') for r in records)
  duplicated = {k: n for k, n in seen.items()
                if n > 1 and isinstance(k, str) and k.strip()}
  assert duplicated and len(duplicated) < len(records) // 2
  main, dups, dead = _per_record(records, duplicated)
  assert main and dead
  with TestPipeline(runner='FnApiRunner') as p:
    counts = p | 'Counts' >> beam.Create(sorted(
        (keys.key_digest(k), n) for k, n in duplicated.items()))
    chunked = (p
               | beam.Create(records)
               | ChunkRecords(7)
               | KeyAndValidateChunks(RULE, SPECS, FEATURES, 20, counts))
    assert_that(chunked.main | beam.Map(len), _at_most(7), label='sizes')
    assert_that(chunked.main | Unchunk() | 'Main' >> beam.Map(_pair),
                equal_to([_pair(kv) for kv in main]), label='main')
    assert_that(chunked[DUPLICATED] | 'Dups' >> beam.Map(_pair),
                equal_to([_pair(kv) for kv in dups]), label='dups')
    assert_that(chunked[DEAD_LETTER] | 'Dead' >> beam.Map(_dead),
                equal_to([_dead(d) for d in dead]), label='dead')


def test_find_duplicate_keys_in_memory_and_per_key_agree():
  records = _records(seed=3, n=2000)
  seen = collections.Counter(r.get('key') for r in records)
  expected = sorted((keys.key_digest(k), n) for k, n in seen.items()
                    if n > 1 and isinstance(k, str) and k.strip())
  assert len(expected) > 100
  for in_memory in (True, False):
    with TestPipeline(runner='FnApiRunner') as p:
      found = (p
               | beam.Create(records)
               | ChunkRecords(64)
               | keys.FindDuplicateKeys(RULE, in_memory))
      assert_that(found, equal_to(expected))


def test_chunks_keep_windows_outside_the_global_window():
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = (p
              | beam.Create(range(10))
              | beam.Map(lambda i: window.TimestampedValue(i, i * 60))
              | beam.WindowInto(window.FixedWindows(60))
              | ChunkRecords(4))
    assert_that(chunks, equal_to([[i] for i in range(10)]))


def test_rechunk_gathers_partial_chunks_into_full_batches():
  # What phase 1 forwards of each of its batches, gathered for phase 2.
  parts = [list(range(i * 10, i * 10 + n)) for i, n in enumerate([3, 0, 7, 5, 9])]
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = (p
              | beam.Create(parts, reshuffle=False)
              | Rechunk(4))
    assert_that(chunks | 'Sizes' >> beam.Map(len),
                equal_to([4, 4, 4, 4, 4, 4]), label='full batches')
    assert_that(chunks | Unchunk(),
                equal_to([i for part in parts for i in part]),
                label='every item once')


def test_rechunk_leaves_chunks_alone_outside_the_global_window():
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = (p
              | beam.Create([[1, 2], [3]])
              | beam.Map(lambda c: window.TimestampedValue(c, c[0] * 60))
              | beam.WindowInto(window.FixedWindows(60))
              | Rechunk(4))
    assert_that(chunks, equal_to([[1, 2], [3]]))


@pytest.mark.parametrize('threads', [0, 3])
def test_chunk_inference_keeps_keys_with_their_predictions(
    tiny_model_dir, threads):
  texts = [f'great film {i}' if i % 2 else f'awful film {i}' for i in range(90)]
  expected = [o['positive_review_probability']
              for o in predictor.load(tiny_model_dir).predict(texts)]
  pairs = [(f'k{i}', {'text': t}) for i, t in enumerate(texts)]
  chunks = [pairs[i:i + 16] for i in range(0, len(pairs), 16)]
  handler = SignatureModelHandler(
      tiny_model_dir, ['reviews'], feature_map=FEATURES, model_version='v')
  with TestPipeline(runner='FnApiRunner') as p:
    results = (p
               | beam.Create(chunks, reshuffle=False)
               | RunChunkInference(handler, threads))
    # One chunk out per chunk in, in the order submitted within the bundle.
    assert_that(results | 'Firsts' >> beam.Map(lambda c: (c[0][0], len(c))),
                equal_to([(c[0][0], len(c)) for c in chunks]),
                label='one out per chunk')
    assert_that(
        results | Unchunk() | beam.Map(lambda kv: (
            kv[0], round(float(kv[1].inference['positive_review_probability']), 5),
            kv[1].model_id)),
        equal_to([(f'k{i}', round(float(p_), 5), 'v')
                  for i, p_ in enumerate(expected)]))


def test_a_pending_chunk_copied_out_of_its_process_is_refused():
  import concurrent.futures
  import pickle
  from transforms.inference import chunked as chunk_inference
  future = concurrent.futures.Future()
  future.set_result(([('k', 'result')], 0.01))
  await_fn = chunk_inference._AwaitChunks(depth=0)  # pylint: disable=protected-access
  await_fn.start_bundle()
  assert list(await_fn.process(chunk_inference.PendingChunk(future))) == [
      [('k', 'result')]]
  copied = pickle.loads(pickle.dumps(chunk_inference.PendingChunk(future)))
  with pytest.raises(RuntimeError, match='fused'):
    list(await_fn.process(copied))
