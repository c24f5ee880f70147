"""Streaming evaluation: the state the event-time join holds over a long
stream, and whether it stays bounded by the label lateness.

The stream (harness.evaluation_stream.events): --messages messages in
all, predictions evenly over 30 days of event time (two model versions) and
labels for 90% of them, each label 0-0.9 x the lateness after its
prediction, except 5% of the labels, which come 1-2 x the lateness after
(after their key was flushed: `late_label` dead letters). So 1M messages
are 526,316 predictions and ~473,700 labels. Every message goes through the real
parsing DoFns and the real join DoFn (transforms/evaluation/stream_join.py),
driven the way a runner drives it (harness.keyed_state: per-key state,
event-time timers), the watermark following event time in one-hour steps.
(A runner's state is not observable from a pipeline, and the DirectRunner's
streaming metrics lose counter updates, so the pipeline's own figures
cannot be read there.)

Reported: the join's own counters (`keys_in_state`, `predictions_in_state`,
`labels_in_state`, `tombstones_in_state`), peak over every watermark step,
and at every sample (each --sample_days of event time) the keys, rows,
tombstones and encoded bytes held,
read from the state itself (the counters must agree with it, or the run
fails); the peak RSS of the process (the driver's Python heap: the stream
is generated as it is consumed, never held). Held state must follow the
rate of predictions x the lateness, not grow with the stream.

  python -m benchmarks.evaluation_stream [--messages 1000000]
      [--lateness_h 24] [--sample_days 3]

The last line printed is one JSON object with the figures.
"""
import argparse
import datetime
import json
import sys
import time

from benchmarks import common

DAYS = 30
LABELLED = 0.9
STEP_S = 3600


def child(messages, lateness_s, sample_days):
  from harness.evaluation_stream import JoinStateRun
  from harness.evaluation_stream import START
  from harness.evaluation_stream import events
  from transforms.evaluation.config import EvaluationConfig
  config = EvaluationConfig(
      as_of=START + datetime.timedelta(days=DAYS),
      prediction_field='positive_review_probability',
      key_segments=('age', 'sex', 'id'), time_slices=('all',), windows=())
  predictions = round(messages / (1 + LABELLED))
  started = time.time()
  run = JoinStateRun(config, lateness_s, STEP_S)
  run.feed(events(predictions, DAYS * 86400, lateness_s, labelled=LABELLED),
           sample_days * 86400)
  samples = run.samples
  end = run.finish()
  elapsed = time.time() - started
  dead = {}
  for d in run.driver.dead:
    dead[d['reason']] = dead.get(d['reason'], 0) + 1
  labelled = sum(1 for scored in run.driver.decisions
                 if scored.value[1][3] is not None)
  return {'messages': run.messages, 'predictions': predictions,
          'labels': run.messages - predictions,
          'scored_rows': len(run.driver.decisions), 'labelled': labelled,
          'dead_letters': dead, 'parse_dead_letters': run.parse_dead,
          'peak': run.peak,
          'peak_state_bytes': max(s['state_bytes'] for s in samples),
          'samples': samples, 'after_end': end,
          'elapsed_s': round(elapsed, 1)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--messages', type=int, default=1_000_000)
  parser.add_argument('--lateness_h', type=float, default=24)
  parser.add_argument('--sample_days', type=int, default=3)
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  lateness_s = args.lateness_h * 3600
  if args.child:
    print(json.dumps(child(args.messages, lateness_s, args.sample_days)))
    return
  print(f'machine: {common.machine()}', flush=True)
  f = common.run_child(
      ['-m', 'benchmarks.evaluation_stream', '--child',
       '--messages', str(args.messages), '--lateness_h', str(args.lateness_h),
       '--sample_days', str(args.sample_days)])
  # What the lateness bounds: each prediction is held one lateness.
  bound = f['predictions'] * lateness_s / (DAYS * 86400)
  print(f'{f["messages"]:,} messages ({f["predictions"]:,} predictions, '
        f'{f["labels"]:,} labels) over {DAYS} days, lateness '
        f'{args.lateness_h:g} h: {f["elapsed_s"]} s, peak RSS '
        f'{f["peak_rss_mb"]:,} MB; predictions per lateness {bound:,.0f}')
  print()
  cells = lambda s: [f'{s["messages"]:,}', f'{s["keys"]:,}',
                     f'{s["predictions"]:,}', f'{s["labels"]:,}',
                     f'{s["tombstones"]:,}', f'{s["keys_with_state"]:,}',
                     f'{s["state_bytes"] / 2**20:.2f}']
  rows = [[s['watermark'][:16]] + cells(s) for s in f['samples']]
  peak = f['peak']
  rows.append(['peak (counters, every step)', '', f'{peak["keys"]:,}',
               f'{peak["predictions"]:,}', f'{peak["labels"]:,}',
               f'{peak["tombstones"]:,}', '',
               f'{f["peak_state_bytes"] / 2**20:.2f} (of samples)'])
  rows.append(['after the end (watermark at infinity)'] + cells(
      f['after_end']))
  print(common.table(['watermark', 'messages so far', 'keys with rows',
                      'predictions held', 'labels held', 'tombstones',
                      'keys with any state', 'state (MiB)'], rows))
  print()
  print(json.dumps(dict(
      {k: v for k, v in f.items() if k != 'samples'},
      workload='streaming evaluation join state', lateness_h=args.lateness_h,
      days=DAYS, predictions_per_lateness=round(bound),
      machine=common.machine(),
      samples=[{k: s[k] for k in ('watermark', 'keys', 'predictions',
                                  'labels', 'tombstones', 'keys_with_state',
                                  'state_bytes')}
               for s in f['samples']])))


if __name__ == '__main__':
  sys.exit(main())
