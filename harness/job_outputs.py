"""What a batch job left under its output prefix, read back for comparison.

A fault test compares a run that was killed and rerun with an uninterrupted
one: the keyed predictions (not their `predicted_at`), the dead letters, the
shard counts of each output and any temporary folder Beam's sinks left.
"""
import collections
import dataclasses
import glob
import json
import os
import re

_SHARD = re.compile(r'-(\d{5})-of-(\d{5})\.jsonl$')


@dataclasses.dataclass
class BatchOutputs:
  predictions: dict         # key -> predictions, as written
  prediction_lines: int     # lines across the prediction shards
  dead_letters: list        # sorted (key, reason, raw as JSON)
  shard_counts: dict        # output -> {shard counts its files name}
  temporary_folders: list   # beam-temp-* folders left in the directory

  @property
  def duplicates(self):
    """Prediction lines beyond one per key."""
    return self.prediction_lines - len(self.predictions)


def _lines(pattern):
  for path in sorted(glob.glob(pattern)):
    with open(path, encoding='utf-8') as f:
      for line in f:
        if line.strip():
          yield json.loads(line)


def _counts(pattern):
  counts = set()
  for path in glob.glob(pattern):
    match = _SHARD.search(path)
    if match:
      counts.add(int(match.group(2)))
  return counts


def batch_outputs(prefix, dead_letter_prefix=None):
  """The outputs of a batch_predict run writing JSON lines under `prefix`
  (dead letters under `dead_letter_prefix`, default PREFIX_errors)."""
  dead_prefix = dead_letter_prefix or f'{prefix}_errors'
  predictions, lines = {}, 0
  for row in _lines(f'{prefix}-[0-9]*.jsonl'):
    lines += 1
    predictions[row['key']] = row['predictions']
  dead = sorted((d.get('key') or '', d['reason'],
                 json.dumps(d.get('raw'), sort_keys=True))
                for d in _lines(f'{dead_prefix}-[0-9]*.jsonl'))
  directory = os.path.dirname(prefix) or '.'
  return BatchOutputs(
      predictions=predictions, prediction_lines=lines, dead_letters=dead,
      shard_counts={'predictions': _counts(f'{prefix}-*.jsonl'),
                    'dead letters': _counts(f'{dead_prefix}-*.jsonl')},
      temporary_folders=sorted(glob.glob(os.path.join(directory,
                                                      'beam-temp-*'))))


def by_reason(dead_letters):
  return dict(collections.Counter(reason for _, reason, _ in dead_letters))


def differing_keys(got, expected, tolerance=1e-5):
  """Keys of `expected` (key -> predictions) missing from `got` or predicted
  otherwise (beyond `tolerance`: batch composition may move the last float
  bits), and keys `got` has that `expected` has not."""
  def close(a, b):
    if isinstance(a, float) and isinstance(b, float):
      return abs(a - b) <= tolerance
    return a == b

  out = sorted(set(got) ^ set(expected))
  for key in set(got) & set(expected):
    a, b = got[key], expected[key]
    if a.keys() != b.keys() or not all(close(a[k], b[k]) for k in a):
      out.append(key)
  return out
