"""Writes baseline_stats.json next to a model version: the reference that
pipelines.evaluate compares each window of the prediction log with (drift).

From the data the model was trained on, scored by the model itself:

    python -m models.baseline_stats --model_dir data/models/sentiment/1 \\
        --input 'data/demo/inputs/jsonl/*.jsonl' --feature_map reviews=text \\
        --where split=train

or from a prediction log the model wrote (rows of
common/records/prediction_log.py, or batch_predict's records):

    python -m models.baseline_stats --model_dir data/models/sentiment/1 \\
        --predictions 'out/prediction_log-*.jsonl'

The statistics, their bins and the file's schema are common.feature_stats'
(docs/evaluation.md). The out-of-vocabulary rate is measured against the
model's own vocabulary when models.runtime.vocabulary can read it, else
against the VOCABULARY_SIZE most frequent tokens of the baseline's texts
(`vocabulary_source` says which).
"""
import argparse
import glob
import json
import os
import sys

from common import feature_stats

BATCH_SIZE = 512


def _rows(patterns, skipped):
  """The JSON objects of the files' lines; others counted in `skipped`."""
  for pattern in patterns.split(','):
    paths = sorted(glob.glob(pattern.strip()))
    if not paths:
      raise SystemExit(f'error: no files match {pattern!r}')
    for path in paths:
      with open(path, encoding='utf-8') as f:
        for line in f:
          if not line.strip():
            continue
          try:
            row = json.loads(line)
          except ValueError:
            row = None
          if isinstance(row, dict):
            yield row
          else:
            skipped[0] += 1


def _decoded(value, field):
  if isinstance(value, str):
    value = json.loads(value)
  if isinstance(value, dict) and isinstance(value.get(field), list):
    value = value[field][0]
  return value if isinstance(value, dict) else {}


def logged_pairs(rows, skipped):
  """(instance, outputs) of prediction-log rows or batch_predict records;
  rows without a readable prediction are counted in `skipped` (a list of
  one int), not used."""
  for row in rows:
    try:
      if 'raw_prediction' in row:
        pair = (_decoded(row.get('raw_data'), 'instances'),
                _decoded(row['raw_prediction'], 'predictions'))
      else:
        pair = {}, _decoded(row.get('predictions'), 'predictions')
    except (ValueError, TypeError, IndexError, AttributeError):
      pair = None
    if pair is None or not pair[1]:
      skipped[0] += 1
    else:
      yield pair


def scored_pairs(model_dir, instances, signature, batch_size=BATCH_SIZE):
  """(instance, outputs) of instances scored by the model, in batches."""
  from models.runtime import predictor
  model = predictor.load(model_dir)
  for start in range(0, len(instances), batch_size):
    batch = instances[start:start + batch_size]
    yield from zip(batch, model.predict(batch, signature))


def vocabulary_for(model_dir, pairs):
  """(vocabulary, source): the model's, else the baseline texts' own."""
  from models.runtime.vocabulary import read_vocabulary
  words = read_vocabulary(model_dir)
  if words is not None:
    return words, 'model'
  texts = [v for instance, _ in pairs for v in instance.values()
           if isinstance(v, str)]
  if not texts:
    return None, None
  return feature_stats.text_vocabulary(texts), 'baseline'


def baseline_of(model_dir, pairs, source):
  """The baseline of (instance, outputs) pairs (a list)."""
  words, vocabulary_source = vocabulary_for(model_dir, pairs)
  vocabulary = feature_stats.as_vocabulary(words)
  outputs = {name for _, out in pairs for name in out}
  return feature_stats.build_baseline(
      (feature_stats.profile(instance, out, vocabulary)
       for instance, out in pairs), outputs, vocabulary_source, source, words)


def write(baseline, path):
  with open(path, 'w', encoding='utf-8') as f:
    f.write(feature_stats.dumps(baseline) + '\n')
  stats = baseline['statistics']
  print(f'baseline statistics: {baseline["rows"]:,} rows, {len(stats)} '
        f'statistics ({", ".join(sorted(stats))}) -> {path}')
  return path


def write_for_texts(model_dir, input_name, texts, source):
  """The training step's baseline: `texts` scored by the exported model."""
  pairs = list(scored_pairs(model_dir, [{input_name: t} for t in texts],
                            'serving_default'))
  return write(baseline_of(model_dir, pairs, source),
               os.path.join(model_dir, feature_stats.FILE_NAME))


def _pairs_map(text):
  out = {}
  for part in filter(None, (p.strip() for p in (text or '').split(','))):
    name, sep, field = part.partition('=')
    if not sep or not name or not field:
      raise SystemExit(f'error: {part!r} is not NAME=FIELD')
    out[name] = field
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model_dir', required=True,
                      help='The model version; the file is written in it '
                      'unless --output says otherwise.')
  parser.add_argument('--input', help='JSON-lines files (comma-separated '
                      'patterns) of the data to score.')
  parser.add_argument('--feature_map', default='',
                      help='Model input = input field, comma-separated '
                      '(e.g. reviews=text).')
  parser.add_argument('--where', default='',
                      help='Only rows whose FIELD=VALUE (e.g. split=train).')
  parser.add_argument('--predictions', help='Instead of --input: prediction '
                      'log files (comma-separated patterns).')
  parser.add_argument('--signature', default='serving_default')
  parser.add_argument('--output', help='Default: MODEL_DIR/'
                      f'{feature_stats.FILE_NAME}.')
  args = parser.parse_args(argv)
  if bool(args.input) == bool(args.predictions):
    parser.error('give --input or --predictions')
  output = args.output or os.path.join(args.model_dir, feature_stats.FILE_NAME)
  skipped = [0]
  if args.predictions:
    pairs = list(logged_pairs(_rows(args.predictions, skipped), skipped))
    source = f'prediction log {args.predictions}'
  else:
    feature_map = _pairs_map(args.feature_map)
    where = _pairs_map(args.where)
    rows = [r for r in _rows(args.input, skipped)
            if all(str(r.get(k)) == v for k, v in where.items())]
    instances = [{name: r.get(field, r.get(name)) for name, field in
                  feature_map.items()} if feature_map else r for r in rows]
    pairs = list(scored_pairs(args.model_dir, instances, args.signature))
    source = f'{args.input}' + (f' where {args.where}' if where else '')
  if skipped[0]:
    print(f'skipped {skipped[0]:,} unreadable rows')
  if not pairs:
    raise SystemExit('error: no rows to build a baseline from')
  write(baseline_of(args.model_dir, pairs, source), output)
  return 0


if __name__ == '__main__':
  sys.exit(main())
