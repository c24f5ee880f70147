"""Moderation: comments/second of the whole local pipeline next to the NER
step alone over the same comments (`transforms.entities.LocalEntityFn
.annotate` in batches of its default size: the limit), in one run,
interleaved. The pipeline runs as a batch replay (`--input`, FnApiRunner)
and streaming (DirectRunner reading the Pub/Sub emulator: from the first
publish to the last decision pulled back, event times rewritten to "now"
because the DirectRunner's Pub/Sub watermark is the wall clock; allowed
lateness 2 s). Local spaCy entities throughout.

Comments come from tests.harness.comments_demo (the demo generator: 40
commenters over 3 days, well-known people, no malformed lines).

  python -m benchmarks.moderation [--comments 20000] [--repeats 2]
      [--streaming_comments 2000]

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


def child_streaming(path):
  """Needs the Pub/Sub emulator (gcloud SDK jar + java), started here."""
  import socket
  import subprocess
  import threading
  import urllib.request
  from google.cloud import pubsub_v1
  from pipelines import moderate
  from tests.harness.pubsub import emulator_jar
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    host = f'127.0.0.1:{s.getsockname()[1]}'
  emulator = subprocess.Popen(
      ['java', '-jar', emulator_jar(), '--host=127.0.0.1',
       f'--port={host.split(":")[1]}'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 60
    while True:
      try:
        with urllib.request.urlopen(f'http://{host}/', timeout=1):
          break
      except OSError:
        if time.monotonic() > deadline:
          raise RuntimeError('Pub/Sub emulator did not start')
        time.sleep(0.2)
    os.environ['PUBSUB_EMULATOR_HOST'] = host
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    names = {}
    for name in ('comments', 'decisions', 'dead-letters'):
      topic = publisher.topic_path('benchmark-project', name)
      publisher.create_topic(name=topic)
      sub = subscriber.subscription_path('benchmark-project', name + '-sub')
      subscriber.create_subscription(name=sub, topic=topic)
      names[name] = (topic, sub)
    with open(path, encoding='utf-8') as f:
      comments = [json.loads(line) for line in f]
    result = moderate.run([
        '--input_subscription', names['comments'][1],
        '--output_topic', names['decisions'][0],
        '--dead_letter_topic', names['dead-letters'][0],
        '--allowed_lateness', '2'], wait=False)
    time.sleep(5)  # let the DirectRunner start pulling
    started = time.time()
    futures = []
    for i, comment in enumerate(comments):
      comment['timestamp'] = started + i * 0.001
      futures.append(publisher.publish(names['comments'][0],
                                       json.dumps(comment).encode()))
    for future in futures:
      future.result(timeout=60)
    got, last, deadline = 0, started, time.monotonic() + 600
    while got < len(comments) and time.monotonic() < deadline:
      for name in ('decisions', 'dead-letters'):
        response = subscriber.pull(subscription=names[name][1],
                                   max_messages=1000, timeout=1)
        if response.received_messages:
          last = time.time()
          subscriber.acknowledge(
              subscription=names[name][1],
              ack_ids=[m.ack_id for m in response.received_messages])
          got += len(response.received_messages)
    elapsed = last - started
    threading.Thread(target=result.cancel, daemon=True).start()
    if got < len(comments):
      raise RuntimeError(f'only {got} of {len(comments)} comments decided')
    return {'elapsed_s': elapsed}
  finally:
    emulator.terminate()
    emulator.wait(timeout=30)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--comments', type=int, default=20000)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--streaming_comments', type=int, default=2000,
                      help='Comments for the streaming run (0: skip it).')
  parser.add_argument('--child', choices=('ner', 'replay', 'streaming'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  os.makedirs(common.SCRATCH, exist_ok=True)
  path = dataset(args.comments)
  if args.child:
    run = {'ner': child_ner, 'replay': child_replay,
           'streaming': child_streaming}[args.child]
    print(json.dumps(run(path)), flush=True)
    os._exit(0)  # the cancelled streaming job may leave threads behind
  print(f'machine: {common.machine()}', flush=True)
  sizes = {'ner': args.comments, 'replay': args.comments}
  if args.streaming_comments:
    sizes['streaming'] = args.streaming_comments
  runs = {v: [] for v in sizes}
  for r in range(args.repeats):
    order = list(sizes)[r % len(sizes):] + list(sizes)[:r % len(sizes)]
    for variant in order:
      n = sizes[variant]
      if variant == 'streaming':
        dataset(n)
      figures = common.run_child(['-m', 'benchmarks.moderation', '--child',
                                  variant, '--comments', str(n)])
      figures['comments_per_s'] = n / figures['elapsed_s']
      runs[variant].append(figures)
      print(f'  {n:>7,} {variant:<9} run {r + 1}: '
            f'{figures["comments_per_s"]:7,.0f} comments/s, peak RSS '
            f'{figures["peak_rss_mb"]:,} MB', flush=True)
  results = {v: {'comments': sizes[v],
                 'comments_per_s': round(common.median(
                     [f['comments_per_s'] for f in fs])),
                 'all_comments_per_s': [round(f['comments_per_s']) for f in fs],
                 'peak_rss_mb': max(f['peak_rss_mb'] for f in fs)}
             for v, fs in runs.items()}
  ratios = {f'{v}/ner': round(results[v]['comments_per_s'] /
                              results['ner']['comments_per_s'], 2)
            for v in results if v != 'ner'}
  print()
  print(common.table(
      ['variant', 'comments', 'comments/s', 'x NER only', 'peak RSS (MB)'],
      [[v, f'{results[v]["comments"]:,}', results[v]['comments_per_s'],
        ratios.get(f'{v}/ner', 1.0), results[v]['peak_rss_mb']]
       for v in results]))
  print(json.dumps({'workload': 'moderation', 'repeats': args.repeats,
                    'machine': common.machine(), 'results': results,
                    'ratios': ratios, 'target': TARGET}))


if __name__ == '__main__':
  sys.exit(main())
