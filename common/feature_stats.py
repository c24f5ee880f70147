"""What drift is measured on: a row's statistics, their bins, the baseline.

One module, shared by the baseline writer (models/baseline_stats.py, the
last step of models/train_demo.py) and the evaluation job
(transforms/evaluation/drift.py), so a statistic is computed and binned the
same way on both sides; a distance between two histograms is only meaningful
when both were cut by the same edges.

A row's *profile* is {statistic name: value}:
- each text input field F: F_chars (length in characters), F_tokens (tokens
  as the demo model's TextVectorization splits them: ASCII lower case,
  punctuation stripped, split on ASCII whitespace, on UTF-8 bytes like
  models/runtime/tokenizer.py) and, when a vocabulary is known, F_oov_rate
  (share of tokens outside it);
- each numeric input field F: F itself;
- each short string or boolean input field F: F (its value, a category);
- each numeric prediction output O: O (a probability when in [0, 1]).

The *baseline* (baseline_stats.json, schema in docs/evaluation.md) keeps,
per statistic, its kind and bins, and the reference counts in those bins:
- numeric: 10 quantile bins (9 inner edges from the baseline's deciles,
  repeated edges merged); a value v falls in bin `bisect_right(edges, v)`,
  i.e. numpy.digitize(v, edges);
- probability (an output whose baseline values all lie in [0, 1]): 10
  equal-width bins on [0, 1], the same rule;
- categorical: the TOP_K most frequent values, and one bin for the others.
Whether a string field is text or categorical is decided on the baseline: it
is categorical when its values are short (under CATEGORY_CHARS characters)
and repeat (at most CATEGORICAL_MAX_DISTINCT distinct values, and no more
distinct values than half the rows), else text.
"""
import bisect
import collections
import json
import math

FORMAT = 'resilient-serving/baseline_stats/1'
FILE_NAME = 'baseline_stats.json'
NUMERIC, PROBABILITY, CATEGORICAL = 'numeric', 'probability', 'categorical'
QUANTILE_BINS = 10
PROBABILITY_EDGES = tuple(i / 10 for i in range(1, 10))
TOP_K = 20
CATEGORICAL_MAX_DISTINCT = 50
OTHER = '__other__'
# A categorical value is compared on its first characters only: long values
# are text, and the profile of a row stays small.
CATEGORY_CHARS = 100
TEXT_SUFFIXES = ('_chars', '_tokens', '_oov_rate')
# keras.layers.TextVectorization's default standardization, on bytes.
_PUNCTUATION = b'!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\''
_ASCII_LOWER = bytes.maketrans(b'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                               b'abcdefghijklmnopqrstuvwxyz')
VOCABULARY_SIZE = 20000


def tokens(text):
  """The demo model's tokens of `text`, as UTF-8 bytes."""
  return text.encode('utf-8').translate(_ASCII_LOWER, _PUNCTUATION).split()


def text_vocabulary(texts, size=VOCABULARY_SIZE):
  """The `size` most frequent tokens of `texts` (ties by token): the
  fallback vocabulary when the model's own cannot be read."""
  counts = collections.Counter(w for text in texts for w in tokens(text))
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
  return [w.decode('utf-8', 'replace') for w, _ in ranked]


def _number(value):
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def profile(instance, outputs, vocabulary=None):
  """{statistic: value} of one row: the model's input instance (a dict, may
  be empty) and its numeric outputs (a dict)."""
  out = {}
  for field, value in (instance or {}).items():
    if isinstance(value, str):
      out[field] = value[:CATEGORY_CHARS]
      words = tokens(value)
      out[f'{field}_chars'] = len(value)
      out[f'{field}_tokens'] = len(words)
      if vocabulary is not None:
        out[f'{field}_oov_rate'] = (
            sum(w not in vocabulary for w in words) / len(words)
            if words else 0.0)
    elif isinstance(value, bool):
      out[field] = str(value).lower()
    elif _number(value):
      out[field] = float(value)
  for name, value in (outputs or {}).items():
    if isinstance(value, list) and len(value) == 1:
      value = value[0]
    if _number(value):
      out[name] = float(value)
  return out


def quantile_edges(values, bins=QUANTILE_BINS):
  """Inner edges at the quantiles of `values` (numpy's linear rule), with
  repeats merged so every bin is non-empty in the baseline."""
  ordered = sorted(values)
  n = len(ordered)
  edges = []
  for i in range(1, bins):
    position = (n - 1) * i / bins
    low = math.floor(position)
    high = min(low + 1, n - 1)
    edge = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    if not edges or edge > edges[-1]:
      edges.append(edge)
  return edges


def bin_of(spec, value, index=None):
  """The bin index of `value` under a statistic's spec, or None when the
  value does not fit the statistic (a number for a category, ...). `index`:
  the spec's {category: bin}, when the caller keeps one."""
  if spec['kind'] == CATEGORICAL:
    if not isinstance(value, str):
      return None
    if index is None:
      index = {c: i for i, c in enumerate(spec['categories'])}
    return index.get(value, len(spec['categories']))
  if isinstance(value, str):
    return None
  return bisect.bisect_right(spec['edges'], value)


def n_bins(spec):
  if spec['kind'] == CATEGORICAL:
    return len(spec['categories']) + 1
  return len(spec['edges']) + 1


def _spec(name, values, output):
  """A statistic's spec from its baseline values, or None if unusable."""
  if all(isinstance(v, str) for v in values):
    counts = collections.Counter(values)
    if (len(counts) > CATEGORICAL_MAX_DISTINCT
        or len(counts) > len(values) / 2
        or any(len(v) >= CATEGORY_CHARS for v in counts)):
      return None  # text: its _chars/_tokens statistics describe it
    categories = [c for c, _ in sorted(counts.items(),
                                       key=lambda kv: (-kv[1], kv[0]))[:TOP_K]]
    spec = {'kind': CATEGORICAL, 'categories': categories}
  elif all(not isinstance(v, str) for v in values):
    if output and all(0.0 <= v <= 1.0 for v in values):
      spec = {'kind': PROBABILITY, 'edges': list(PROBABILITY_EDGES)}
    else:
      spec = {'kind': NUMERIC, 'edges': quantile_edges(values)}
  else:
    return None
  spec['source'] = 'output' if output else 'input'
  return spec


def build_baseline(profiles, output_names, vocabulary_source, source,
                   vocabulary=None):
  """The baseline of a sequence of profiles (see the module doc).

  `output_names`: which statistics are prediction outputs;
  `vocabulary_source`: 'model', 'baseline' or None (no OOV rate);
  `source`: a line saying where the rows came from.
  """
  values = collections.defaultdict(list)
  rows = 0
  for p in profiles:
    rows += 1
    for name, value in p.items():
      values[name].append(value)
  specs = {name: _spec(name, values[name], name in output_names)
           for name in sorted(values)}
  # A short string field is a category: its text statistics are dropped.
  categorical = {name for name, spec in specs.items()
                 if spec and spec['kind'] == CATEGORICAL}
  statistics = {}
  for name, spec in specs.items():
    if spec is None or any(name == f'{field}{suffix}' for field in categorical
                           for suffix in TEXT_SUFFIXES):
      continue
    counts = [0] * n_bins(spec)
    index = {c: i for i, c in enumerate(spec.get('categories', ()))}
    for value in values[name]:
      b = bin_of(spec, value, index)
      if b is not None:
        counts[b] += 1
    spec['counts'] = counts
    statistics[name] = spec
  baseline = {'format': FORMAT, 'source': source, 'rows': rows,
              'vocabulary_source': vocabulary_source,
              'statistics': statistics}
  if vocabulary is not None:
    baseline['vocabulary'] = sorted(vocabulary)
  return baseline


class Binner:
  """Bins profiles under one baseline: {statistic: bin} of the baseline's
  statistics present in the profile (built once per worker)."""

  def __init__(self, baseline):
    self._specs = [
        (name, spec, {c: i for i, c in enumerate(spec.get('categories', ()))})
        for name, spec in sorted(baseline['statistics'].items())]

  def __call__(self, row_profile):
    out = {}
    for name, spec, index in self._specs:
      if name in row_profile:
        b = bin_of(spec, row_profile[name], index)
        if b is not None:
          out[name] = b
    return out


def vocabulary_of(baseline):
  """The baseline's vocabulary as a set of UTF-8 tokens (what `tokens`
  returns), or None."""
  return as_vocabulary(baseline.get('vocabulary'))


def as_vocabulary(words):
  """A word list as the set `profile` takes, or None."""
  return None if words is None else frozenset(
      w.encode('utf-8') for w in words)


def check_baseline(baseline):
  """Raises ValueError saying what is wrong with a loaded baseline."""
  if not isinstance(baseline, dict) or baseline.get('format') != FORMAT:
    raise ValueError(f'not a baseline statistics file (format {FORMAT})')
  for name, spec in baseline.get('statistics', {}).items():
    if spec.get('kind') not in (NUMERIC, PROBABILITY, CATEGORICAL):
      raise ValueError(f'statistic {name!r}: unknown kind {spec.get("kind")!r}')
    if len(spec.get('counts', ())) != n_bins(spec):
      raise ValueError(f'statistic {name!r}: counts do not match its bins')
  return baseline


def dumps(baseline):
  return json.dumps(baseline, indent=1, sort_keys=True)
