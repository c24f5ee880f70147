"""Reports what the two-phase cascade is worth on the demo test split.

For each forwarding rule: the forward rate, the accuracy of phase 1 alone,
phase 2 alone and the cascade, and the throughput of the cascade against
phase 2 alone. Both are timed in-process through the same prediction
libraries the pipeline uses (models.runtime.lite_predictor, models.runtime.predictor), in
batches, after a warm-up, so the figures compare the models rather than Beam.
Also checks the issue's targets: cascade accuracy within 1 point of phase 2
alone, at most 40% forwarded, quantized phase 1 at most a third of its float
size. Prints a table and writes the figures as JSON.

    python -m models.two_phase_report [--models_dir data/models/two_phase] \
        [--forward uncertain:LOW,HIGH ...] [--output out/two_phase_report.json]
"""
import argparse
import json
import os
import sys
import time

from models import demo_data
from transforms.two_phase import forwarding
PHASE2_BATCH_SIZE = 256
PHASE1_BATCH_SIZE = 512
MAX_ACCURACY_GAP = 0.01
MAX_FORWARD_RATE = 0.40
MAX_SIZE_RATIO = 1 / 3


def _timed(fn):
  started = time.perf_counter()
  value = fn()
  return value, time.perf_counter() - started


def _phase2_scores(model, texts):
  import numpy as np
  out = []
  for i in range(0, len(texts), PHASE2_BATCH_SIZE):
    out += model.predict_columns(
        {'reviews': texts[i:i + PHASE2_BATCH_SIZE]})[
            'positive_review_probability']
  return np.asarray(out, dtype='float64')


def evaluate(texts, labels, phase1, phase2, rules):
  """Returns the report dict for `rules` (ForwardRule list) on texts/labels."""
  import numpy as np
  labels = np.asarray(labels, dtype=bool)
  n = len(texts)
  # Warm up both (first calls build interpreters / trace functions).
  phase1.predict_texts(texts[:PHASE1_BATCH_SIZE])
  _phase2_scores(phase2, texts[:PHASE2_BATCH_SIZE])

  p1, phase1_s = _timed(lambda: np.asarray(
      phase1.predict_texts(texts, PHASE1_BATCH_SIZE), dtype='float64'))
  p2, phase2_s = _timed(lambda: _phase2_scores(phase2, texts))
  report = {
      'records': n,
      'phase1_accuracy': float(np.mean((p1 >= 0.5) == labels)),
      'phase2_accuracy': float(np.mean((p2 >= 0.5) == labels)),
      'phase1_records_per_s': round(n / phase1_s, 1),
      'phase2_records_per_s': round(n / phase2_s, 1),
      'rules': [],
  }
  for rule in rules:
    # The cascade, run for real: phase 1 on everything, phase 2 on what the
    # rule forwards, decisions from whichever phase decided.
    def cascade():
      scores = np.asarray(phase1.predict_texts(texts, PHASE1_BATCH_SIZE))
      final = [rule.phase1_decision(s) for s in scores.tolist()]
      forwarded = [i for i, d in enumerate(final) if d is None]
      second = _phase2_scores(phase2, [texts[i] for i in forwarded])
      for i, s in zip(forwarded, second.tolist()):
        final[i] = forwarding.phase2_decision(s)
      return final, len(forwarded)
    (final, forwarded), cascade_s = _timed(cascade)
    accuracy = float(np.mean(
        (np.asarray(final) == forwarding.POSITIVE_LABEL) == labels))
    report['rules'].append({
        'forward': str(rule),
        'forward_rate': forwarded / n,
        'cascade_accuracy': accuracy,
        'accuracy_gap_to_phase2': report['phase2_accuracy'] - accuracy,
        'cascade_records_per_s': round(n / cascade_s, 1),
        'speedup_vs_phase2': round(phase2_s / cascade_s, 2),
    })
  return report


def check_targets(report):
  """Adds the issue's targets to the report; returns whether all are met."""
  main = report['rules'][0]
  targets = {
      'cascade_within_1_point_of_phase2':
          main['accuracy_gap_to_phase2'] <= MAX_ACCURACY_GAP,
      'forward_rate_at_most_40_percent':
          main['forward_rate'] <= MAX_FORWARD_RATE,
  }
  conversion = report.get('conversion')
  if conversion:
    targets['quantized_at_most_a_third_of_float'] = (
        conversion['size_ratio'] <= MAX_SIZE_RATIO)
  report['targets'] = targets
  return all(targets.values())


def format_report(report):
  lines = [f'== two-phase report: demo test split, {report["records"]:,} '
           'records ==']
  conversion = report.get('conversion')
  if conversion:
    lines.append(
        f'phase 1 TFLite size: float {conversion["float_bytes"]:,} B, '
        f'quantized {conversion["quantized_bytes"]:,} B '
        f'({conversion["size_ratio"]:.1%}); quantization changed accuracy by '
        f'{100 * conversion["accuracy_change"]:+.2f} points')
  lines.append(
      f'phase 1 alone: accuracy {report["phase1_accuracy"]:.4f}, '
      f'{report["phase1_records_per_s"]:>9,.0f} records/s')
  lines.append(
      f'phase 2 alone: accuracy {report["phase2_accuracy"]:.4f}, '
      f'{report["phase2_records_per_s"]:>9,.0f} records/s')
  header = (f'{"forward rule":<26} {"forwarded":>9} {"cascade acc":>11} '
            f'{"gap":>7} {"records/s":>10} {"vs phase 2":>10}')
  lines += [header, '-' * len(header)]
  for r in report['rules']:
    lines.append(
        f'{r["forward"]:<26} {r["forward_rate"]:>9.1%} '
        f'{r["cascade_accuracy"]:>11.4f} '
        f'{100 * r["accuracy_gap_to_phase2"]:>+6.2f}p '
        f'{r["cascade_records_per_s"]:>10,.0f} '
        f'{r["speedup_vs_phase2"]:>9.2f}x')
  for name, ok in report.get('targets', {}).items():
    lines.append(f'target {name:<40} {"met" if ok else "NOT MET"}')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='data',
                      help='Folder holding the demo data wheel cache.')
  parser.add_argument('--models_dir', default=os.path.join(
      'data', 'models', 'two_phase'),
                      help='Output folder of models.train_two_phase.')
  parser.add_argument('--forward', action='append',
                      help='Forwarding rule(s) to report (repeatable); the '
                      'first is checked against the targets. Default: the '
                      'band chosen on validation (two_phase.json), then '
                      'positive:0.5 for comparison.')
  parser.add_argument('--output', default=os.path.join(
      'out', 'two_phase_report.json'), help='Where to write the JSON.')
  args = parser.parse_args(argv)

  from models.runtime import lite_predictor
  from models.runtime import predictor
  with open(os.path.join(args.models_dir, 'two_phase.json')) as f:
    meta = json.load(f)
  try:
    rules = [forwarding.parse_rule(r) for r in
             (args.forward or [meta['forward'], 'positive:0.5'])]
  except ValueError as e:
    parser.error(f'--forward: {e}')
  reviews = demo_data.load_reviews(os.path.join(args.data_dir, 'cache'))
  test = [r for r in reviews if r['split'] == 'test']
  report = evaluate(
      [r['text'] for r in test], [r['label'] == 'positive' for r in test],
      lite_predictor.load(os.path.join(args.models_dir,
                                       meta['phase1']['tflite'])),
      predictor.load(os.path.join(args.models_dir,
                                  meta['phase2']['saved_model'])),
      rules)
  report['conversion'] = meta.get('conversion')
  report['models'] = {'phase1_weights': meta['phase1']['weights'],
                      'phase2_weights': meta['phase2']['weights']}
  met = check_targets(report)
  print(format_report(report))
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, 'w') as f:
    json.dump(report, f, indent=2)
  print(f'written to {args.output}')
  return 0 if met else 1


if __name__ == '__main__':
  sys.exit(main())
