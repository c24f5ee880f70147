"""Two-phase predictions: a quantized TFLite screen, a large model for the rest.

read -> attach keys -> drop duplicate keys -> validate the text ->
phase 1 (a .tflite model in the LiteRT interpreter, every record, batched) ->
the --forward rule: confident records are decided by phase 1; the others go to
phase 2 (a SavedModel through the batch pipeline's handler). When phase 2 is
unavailable (no --phase2_model_dir, or it cannot be read) or fails on a record,
forwarded records go to the pending output instead; replay them later through
phase 2 alone with --replay_pending. Inputs = decisions + pending + dead letters.

    python -m pipelines.two_phase --input 'data/demo/inputs/jsonl/*.jsonl' \\
        --phase1_model data/models/two_phase/phase1.tflite \\
        --phase2_model_dir data/models/two_phase/phase2/1 \\
        --forward uncertain:0.2,0.8 --output out/two_phase/decisions
    python -m pipelines.two_phase --replay_pending \\
        --input 'out/two_phase/decisions_pending*' \\
        --phase2_model_dir data/models/two_phase/phase2/1 --output out/replayed
"""
import argparse
import logging
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import file_inputs
from transforms.keyed import keyed_input
from pipelines import launch
from pipelines import summary
from transforms.two_phase import forwarding
from transforms.keyed import keys
from transforms.io import sinks
from transforms.io import sources
from transforms.two_phase import cascade
from transforms.keyed.features import ValidateFeatures
from transforms.inference.signature_handler import DEFAULT_BATCH_SIZE as PHASE2_BATCH_SIZE
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.record_chunks import ChunkRecords
from transforms.inference.tflite_handler import DEFAULT_BATCH_SIZE as PHASE1_BATCH_SIZE
from transforms.inference.tflite_handler import TFLiteTextModelHandler


def build_parser():
  """The job's flags, declared once: --help, validation, README and the Flex
  Template metadata all derive from this parser."""
  parser = argparse.ArgumentParser(
      prog='python -m pipelines.two_phase',
      description='Two-phase (cascade) predictions: a quantized TFLite model '
      'scores every record, a larger SavedModel decides the records the first '
      'one is unsure of. Unrecognised flags are Beam pipeline options.')
  parser.add_argument(
      '--input', action='append', required=True,
      help='Input file pattern, local or gs:// (repeat the flag or separate '
      'patterns with commas). With --replay_pending: pending JSONL files.')
  file_inputs.add_arguments(parser)
  parser.add_argument(
      '--text_field', default='text',
      help='Record field holding the text both phases read (default: text).')
  parser.add_argument(
      '--phase1_model',
      help='Phase-1 .tflite model, local or gs://; its tokenizer is the '
      '.tokenizer.json file beside it. Required unless --replay_pending.')
  parser.add_argument(
      '--phase1_batch_size', type=int, default=PHASE1_BATCH_SIZE,
      help=f'Records per phase-1 interpreter call (default: '
      f'{PHASE1_BATCH_SIZE}).')
  parser.add_argument(
      '--forward',
      help='Which phase-1 scores go on to phase 2: "uncertain:LOW,HIGH" '
      'forwards LOW <= score <= HIGH (below LOW is negative, above HIGH '
      'positive); "positive:THRESHOLD" forwards score >= THRESHOLD for phase 2 '
      'to confirm (below is negative). Required unless --replay_pending.')
  parser.add_argument(
      '--phase2_model_dir',
      help='Phase-2 SavedModel: local path, gs:// path or TF-Hub handle. '
      'When omitted or unreadable, phase 2 is offline: forwarded records go '
      'to the pending output.')
  parser.add_argument(
      '--phase2_signature', default='serving_default',
      help='Phase-2 signature to call (default: serving_default).')
  parser.add_argument(
      '--phase2_input', default='reviews',
      help='Phase-2 signature input fed --text_field (default: reviews).')
  parser.add_argument(
      '--phase2_output', default='positive_review_probability',
      help='Phase-2 output holding the positive probability (default: '
      'positive_review_probability).')
  parser.add_argument(
      '--phase2_batch_size', type=int, default=PHASE2_BATCH_SIZE,
      help=f'Records per phase-2 call (default: {PHASE2_BATCH_SIZE}).')
  keyed_input.add_inference_threads_argument(parser)
  parser.add_argument(
      '--replay_pending', **launch.SWITCH,
      help='--input holds pending records from an earlier run: send them '
      'through phase 2 alone (phase 1 is not run again).')
  parser.add_argument(
      '--output', required=True,
      help='Output prefix for decision records (JSONL), local or gs://.')
  parser.add_argument(
      '--pending',
      help='Output prefix for pending records, as JSONL (default: '
      '<output>_pending).')
  parser.add_argument(
      '--dead_letter',
      help='Output prefix for rejected records, as JSONL (default: '
      '<output>_errors).')
  parser.add_argument(
      '--num_shards', type=int, default=0,
      help='Output shards; 0 lets the runner decide (default).')
  return parser


def _check_inputs(args):
  patterns = file_inputs.patterns_of(args)
  file_inputs.check_patterns(patterns)
  if args.replay_pending:
    return patterns, 'jsonl'
  return patterns, file_inputs.resolve_format(args, patterns)


def _check_phase1(args):
  from models.runtime.lite_predictor import tokenizer_path
  if not args.phase1_model:
    raise launch.UsageError('--phase1_model', 'required (a .tflite file)')
  for path in (args.phase1_model, tokenizer_path(args.phase1_model)):
    if not FileSystems.exists(path):
      raise launch.UsageError('--phase1_model', f'{path!r} does not exist')
  if not args.forward:
    raise launch.UsageError(
        '--forward', 'required: uncertain:LOW,HIGH or positive:THRESHOLD')
  try:
    return forwarding.parse_rule(args.forward)
  except ValueError as e:
    raise launch.UsageError('--forward', str(e))


def _check_phase2(args):
  """Returns phase 2's unavailability reason, or None when it can serve.

  An unreadable model is not a usage error: phase 2 being offline is a state
  the job is built for. A readable model without the named signature, input
  or output is one.
  """
  from models.runtime import signatures as sigs
  if not args.phase2_model_dir:
    return 'no --phase2_model_dir given'
  try:
    signature = sigs.get_signature(args.phase2_model_dir, args.phase2_signature)
  except sigs.SignatureNotFound as e:
    raise launch.UsageError('--phase2_signature', str(e))
  except Exception as e:  # pylint: disable=broad-except
    return f'cannot read {args.phase2_model_dir!r}: {type(e).__name__}: {e}'
  if list(signature.inputs) != [args.phase2_input]:
    raise launch.UsageError(
        '--phase2_input', f'signature {args.phase2_signature!r} takes '
        f'{sorted(signature.inputs)}; one text input is needed')
  if args.phase2_output not in signature.outputs:
    raise launch.UsageError(
        '--phase2_output', f'signature {args.phase2_signature!r} outputs '
        f'{sorted(signature.outputs)}')
  return None


def validate(args):
  """Checks the command line before anything runs; returns the resolved
  configuration: (patterns, input format, forward rule or None, phase-2
  unavailability reason or None)."""
  for flag in ('phase1_batch_size', 'phase2_batch_size', 'max_text_bytes'):
    if getattr(args, flag) < 1:
      raise launch.UsageError(f'--{flag}', 'must be at least 1')
  keyed_input.check_inference_threads(args)
  patterns, input_format = _check_inputs(args)
  rule = None if args.replay_pending else _check_phase1(args)
  return patterns, input_format, rule, _check_phase2(args)


def build(pipeline, args, patterns, input_format, rule, phase2_unavailable):
  """Composes the job on `pipeline`; returns the cascade.Cascaded outputs
  of each part of the input (see keyed_input.keyed_valid_chunks).

  The hot path moves chunks of records: read -> key and validate -> phase 1
  -> route -> phase 2 -> write, as batch_predict does.
  """
  from models.runtime import signatures as sigs
  from models.runtime.signatures import TensorSpec
  text_spec = {args.phase2_input: TensorSpec('string', (-1,))}
  feature_map = {args.phase2_input: args.text_field}
  threads = keyed_input.inference_threads(
      args, launch.is_local_runner(pipeline.options))
  if phase2_unavailable:
    logging.warning('phase 2 unavailable (%s): forwarded records go to '
                    'pending', phase2_unavailable)
    phase2_handler = None
  else:
    phase2_handler = SignatureModelHandler(
        args.phase2_model_dir, [args.phase2_input],
        signature=args.phase2_signature, feature_map=feature_map,
        model_version=sigs.default_model_version(args.phase2_model_dir),
        batch_size=args.phase2_batch_size)

  def phase2(label):
    return f'Phase 2{label}' >> cascade.Phase2(
        phase2_handler, args.phase2_output, phase2_unavailable, threads)

  if args.replay_pending:
    parts, dead = _pending_chunks(pipeline, args, patterns, text_spec,
                                  feature_map)
    cascades = [chunks | phase2(label) for label, chunks in parts.items()]
  else:
    read = keyed_input.read_chunks(pipeline, patterns, input_format,
                                   args.phase1_batch_size)
    parts, dead = keyed_input.keyed_valid_chunks(
        pipeline, args, patterns, input_format, read, text_spec, feature_map,
        args.phase1_batch_size)
    phase1 = TFLiteTextModelHandler(args.phase1_model, args.text_field,
                                    batch_size=args.phase1_batch_size)
    cascades = [
        chunks | f'Two phases{label}' >> cascade.TwoPhaseCascadeChunks(
            phase1, rule, phase2(label), threads)
        for label, chunks in parts.items()]
  dead += [c.dead_letter for c in cascades]

  _ = tuple(c.decisions for c in cascades) | 'Write decisions' >> (
      sinks.WriteJsonLineChunks(args.output, args.num_shards))
  _ = (tuple(c.pending for c in cascades)
       | 'All pending' >> beam.Flatten()
       | 'Write pending' >> sinks.WriteRecords(
           _pending_prefix(args), 'jsonl', num_shards=args.num_shards))
  _ = (dead
       | 'All dead letters' >> beam.Flatten()
       | 'Write dead letters' >> sinks.WriteDeadLetters(
           args.dead_letter or f'{args.output}_errors'))
  return cascades


def _pending_chunks(pipeline, args, patterns, text_spec, feature_map):
  """--replay_pending: pending records -> ({'': chunks of (key, record)
  carrying their phase-1 result}, dead letters)."""
  read = pipeline | 'Read' >> sources.ReadRecords(patterns, 'jsonl')
  keyed = read.main | 'From pending' >> cascade.FromPending()
  dead = [read.dead_letter, keyed.dead_letter]
  unique = keyed.main
  if not args.allow_duplicate_keys:
    deduped = unique | 'Deduplicate keys' >> keys.DeduplicateKeys(
        bucketed=launch.is_local_runner(pipeline.options))
    unique = deduped.main
    dead.append(deduped.dead_letter)
  valid = unique | 'Validate text' >> ValidateFeatures(
      text_spec, feature_map, args.max_text_bytes)
  dead.append(valid.dead_letter)
  return {'': valid.main | 'Chunk' >> ChunkRecords(args.phase2_batch_size)}, dead


def _pending_prefix(args):
  # '_pending', not '-pending': when the decisions are finalized, Beam deletes
  # stale shards matching '<output>-*-of-NNNNN.jsonl', which would include a
  # '<output>-pending-00000-of-00001.jsonl' written moments earlier.
  return args.pending or f'{args.output}_pending'


def run(argv=None):
  """Runs the job; returns the summary figures as a dict."""
  args, beam_args = launch.parse_args(build_parser(), argv)
  patterns, input_format, rule, phase2_unavailable = validate(args)
  options = launch.default_local_runner(PipelineOptions(beam_args))
  started = time.time()
  pipeline = beam.Pipeline(options=options)
  build(pipeline, args, patterns, input_format, rule, phase2_unavailable)
  result = pipeline.run()
  result.wait_until_finish()
  elapsed = time.time() - started

  counts = summary.counters(result)
  phases = counts.get(cascade.NAMESPACE, {})
  inputs = counts.get('read', {}).get(sources.RECORDS, 0)
  by_phase1 = phases.get('decided_by_phase1', 0)
  by_phase2 = phases.get('decided_by_phase2', 0)
  forwarded = phases.get('forwarded', 0)
  pending = phases.get('pending', 0)
  by_reason = summary.dead_letters_by_reason(counts)
  dead_total = sum(by_reason.values())
  scored = by_phase1 + forwarded
  figures = {
      'inputs': inputs, 'decided_by_phase1': by_phase1,
      'forwarded': forwarded, 'decided_by_phase2': by_phase2,
      'pending': pending, 'dead_letters': dead_total,
      'dead_letters_by_reason': by_reason,
      'forward_rate': round(forwarded / scored, 4) if scored else 0.0,
      'elapsed_s': round(elapsed, 2),
      'records_per_s': round(inputs / elapsed, 1) if elapsed else 0.0,
      'phase2_unavailable': phase2_unavailable,
      'reconciled': inputs == by_phase1 + by_phase2 + pending + dead_total,
  }
  rows = [('inputs', inputs)]
  if not args.replay_pending:
    rows += [('decided by phase 1', by_phase1), ('forwarded', forwarded),
             ('forward rate', f'{figures["forward_rate"]:.1%}')]
  rows += [
      ('decided by phase 2', by_phase2), ('pending', pending),
      ('dead letters', dead_total), ('dead letters by reason', by_reason),
      ('elapsed (s)', elapsed), ('records/second', figures['records_per_s']),
      ('inputs = decisions + pending + dead letters',
       'yes' if figures['reconciled'] else 'NO'),
      ('decisions under', f'{args.output}*'),
      ('pending under', f'{_pending_prefix(args)}*'),
      ('dead letters under', f'{args.dead_letter or args.output + "_errors"}*'),
  ]
  if phase2_unavailable:
    rows.append(('phase 2 unavailable', phase2_unavailable))
  print(summary.format_summary('two_phase summary', rows))
  return figures


if __name__ == '__main__':
  sys.exit(launch.main(run))
