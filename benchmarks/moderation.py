"""Moderation: comments/second of the whole local pipeline (batch replay of
`pipelines.moderate`, FnApiRunner, local spaCy entities) next to the NER step
alone over the same comments (`transforms.entities.LocalEntityFn.annotate`
in batches of its default size: the limit), in one run, interleaved.

Comments come from tests.harness.comments_demo (the demo generator: 40
commenters over 3 days, well-known people, no malformed lines).

  python -m benchmarks.moderation [--comments 20000] [--repeats 2]

The last line printed is one JSON object with the figures. Target: the
pipeline at >= 0.8 x the NER-only rate.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from benchmarks import common

TARGET = 0.8


def dataset(n):
  from tests.harness.comments_demo import make_comments
  path = os.path.join(common.SCRATCH, f'comments-{n}.jsonl')
  if not os.path.exists(path):
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      for comment in make_comments(n):
        f.write(json.dumps(comment) + '\n')
    os.replace(path + '.tmp', path)
  return path


def child_ner(path):
  from transforms.entities import LocalEntityFn
  with open(path, encoding='utf-8') as f:
    texts = [json.loads(line)['text'] for line in f]
  fn = LocalEntityFn()
  fn.setup()
  started = time.time()
  batch = 64
  found = 0
  for i in range(0, len(texts), batch):
    found += sum(len(e) for e in fn.annotate(texts[i:i + batch]))
  return {'elapsed_s': time.time() - started, 'entities': found}


def child_replay(path):
  from pipelines import moderate
  output = tempfile.mkdtemp(prefix='bench-mod-', dir=common.SCRATCH)
  try:
    started = time.time()
    code = moderate.run(['--input', path, '--output',
                         os.path.join(output, 'moderation'),
                         '--runner', 'FnApiRunner'])
    elapsed = time.time() - started
  finally:
    shutil.rmtree(output, ignore_errors=True)
  if code:
    raise RuntimeError(f'pipelines.moderate exited with {code}')
  return {'elapsed_s': elapsed}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--comments', type=int, default=20000)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--child', choices=('ner', 'replay'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  os.makedirs(common.SCRATCH, exist_ok=True)
  path = dataset(args.comments)
  if args.child:
    run = child_ner if args.child == 'ner' else child_replay
    print(json.dumps(run(path)))
    return
  print(f'machine: {common.machine()}', flush=True)
  runs = {'ner': [], 'replay': []}
  for r in range(args.repeats):
    for variant in (('ner', 'replay') if r % 2 == 0 else ('replay', 'ner')):
      figures = common.run_child(['-m', 'benchmarks.moderation', '--child',
                                  variant, '--comments', str(args.comments)])
      figures['comments_per_s'] = args.comments / figures['elapsed_s']
      runs[variant].append(figures)
      print(f'  {args.comments:>7,} {variant:<6} run {r + 1}: '
            f'{figures["comments_per_s"]:7,.0f} comments/s, peak RSS '
            f'{figures["peak_rss_mb"]:,} MB', flush=True)
  results = {v: {'comments_per_s': round(common.median(
      [f['comments_per_s'] for f in fs])),
                 'all_comments_per_s': [round(f['comments_per_s']) for f in fs],
                 'peak_rss_mb': max(f['peak_rss_mb'] for f in fs)}
             for v, fs in runs.items()}
  ratio = round(results['replay']['comments_per_s'] /
                results['ner']['comments_per_s'], 2)
  print()
  print(common.table(
      ['comments', 'NER only (comments/s)', 'batch replay (comments/s)',
       'replay/NER', 'peak RSS NER / replay (MB)'],
      [[f'{args.comments:,}', results['ner']['comments_per_s'],
        results['replay']['comments_per_s'], ratio,
        f'{results["ner"]["peak_rss_mb"]:,} / '
        f'{results["replay"]["peak_rss_mb"]:,}']]))
  print(json.dumps({'workload': 'moderation', 'comments': args.comments,
                    'repeats': args.repeats, 'machine': common.machine(),
                    'results': results, 'replay/ner': ratio,
                    'target': TARGET}))


if __name__ == '__main__':
  sys.exit(main())
