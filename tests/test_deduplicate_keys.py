"""DeduplicateKeys: one record per key, the same one whatever the order,
bucketed (global window) or not (other windows)."""
import random

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms import window

from transforms.keyed import keys
PAIRS = ([(f'k{i}', {'key': f'k{i}', 'text': f't{i}'}) for i in range(3000)] +
         [('k7', {'key': 'k7', 'text': 'b second'}),
          ('k7', {'key': 'k7', 'text': 'a first'}),
          ('k2999', {'key': 'k2999', 'text': 'zzz'})])


def _dedup(pairs, windowed=False, bucketed=True):
  with TestPipeline(runner='FnApiRunner') as p:
    keyed = p | beam.Create(pairs, reshuffle=False)
    if windowed:
      keyed = (keyed
               | beam.Map(lambda kv: window.TimestampedValue(kv, 1))
               | beam.WindowInto(window.FixedWindows(60)))
    out = keyed | keys.DeduplicateKeys(bucketed=bucketed)
    kept = {k: r['text'] for k, r in
            ((f'k{i}', {'text': f't{i}'}) for i in range(3000))}
    kept['k7'] = 'a first'  # the smallest canonical JSON of the three
    assert_that(out.main | 'Kept' >> beam.Map(lambda kv: (kv[0], kv[1]['text'])),
                equal_to(sorted(kept.items())), label='kept')
    assert_that(
        out.dead_letter | beam.Map(lambda d: (d['key'], d['raw']['text'],
                                              d['reason'])),
        equal_to([('k7', 'b second', 'duplicate_key'),
                  ('k7', 't7', 'duplicate_key'),
                  ('k2999', 'zzz', 'duplicate_key')]), label='dead')


def test_keeps_the_same_record_per_key_in_any_order(monkeypatch):
  # A small buffer makes one bundle send several lists per bucket.
  monkeypatch.setattr(keys, 'MAX_BUFFERED', 100)
  for seed in (1, 2):
    shuffled = list(PAIRS)
    random.Random(seed).shuffle(shuffled)
    _dedup(shuffled)


def test_windowed_input_is_grouped_by_key_per_window():
  _dedup(PAIRS, windowed=True)


def test_per_key_grouping_for_distributed_runners_keeps_the_same_records():
  shuffled = list(PAIRS)
  random.Random(3).shuffle(shuffled)
  _dedup(shuffled, bucketed=False)
