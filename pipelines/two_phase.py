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
import logging
import sys

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import flags
from pipelines import inputs
from pipelines import launch
from pipelines import local_runner
from pipelines import model
from pipelines import outputs
from pipelines import summary
from pipelines.flags import Flag
from transforms.inference.chunked import default_threads
from transforms.inference.signature_handler import DEFAULT_BATCH_SIZE as PHASE2_BATCH_SIZE
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.inference.tflite_handler import DEFAULT_BATCH_SIZE as PHASE1_BATCH_SIZE
from transforms.inference.tflite_handler import TFLiteTextModelHandler
from transforms.io import sinks
from transforms.io import sources
from transforms.keyed import keys
from transforms.keyed.features import ValidateFeatures
from transforms.keyed.keyed_input import KeyedInput
from transforms.record_chunks import ChunkRecords
from transforms.two_phase import cascade
from transforms.two_phase import forwarding

DESCRIPTION = (
    'Two-phase (cascade) predictions: a quantized TFLite model scores every '
    'record, a larger SavedModel decides the records the first one is unsure '
    'of. Unrecognised flags are Beam pipeline options.')
FLAGS = (
    Flag('input', repeat=True, required=True,
         help='Input file pattern, local or gs:// (repeat the flag or '
         'separate patterns with commas). With --replay_pending: pending '
         'JSONL files.'),
) + inputs.KEYED_INPUT + (
    Flag('text_field', default='text',
         help='Record field holding the text both phases read (default: '
         'text).'),
    Flag('phase1_model', template_type='GCS_READ_FILE',
         help='Phase-1 .tflite model, local or gs://; its tokenizer is the '
         '.tokenizer.json file beside it. Required unless --replay_pending.'),
    Flag('phase1_batch_size', type=int, default=PHASE1_BATCH_SIZE,
         help=f'Records per phase-1 interpreter call (default: '
         f'{PHASE1_BATCH_SIZE}).'),
    Flag('forward',
         help='Which phase-1 scores go on to phase 2: "uncertain:LOW,HIGH" '
         'forwards LOW <= score <= HIGH (below LOW is negative, above HIGH '
         'positive); "positive:THRESHOLD" forwards score >= THRESHOLD for '
         'phase 2 to confirm (below is negative). Required unless '
         '--replay_pending.'),
    Flag('phase2_model_dir',
         help='Phase-2 SavedModel: local path, gs:// path or TF-Hub handle. '
         'When omitted or unreadable, phase 2 is offline: forwarded records '
         'go to the pending output.'),
    Flag('phase2_signature', default='serving_default',
         help='Phase-2 signature to call (default: serving_default).'),
    Flag('phase2_input', default='reviews', template_type='TEXT',
         help='Phase-2 signature input fed --text_field (default: reviews).'),
    Flag('phase2_output', default='positive_review_probability',
         template_type='TEXT',
         help='Phase-2 output holding the positive probability (default: '
         'positive_review_probability).'),
    Flag('phase2_batch_size', type=int, default=PHASE2_BATCH_SIZE,
         help=f'Records per phase-2 call (default: {PHASE2_BATCH_SIZE}).'),
    model.INFERENCE_THREADS,
    model.SHARE_MODEL,
    Flag('replay_pending', switch=True,
         help='--input holds pending records from an earlier run: send them '
         'through phase 2 alone (phase 1 is not run again).'),
    Flag('output', required=True,
         help='Output prefix for decision records (JSONL), local or gs://.'),
    Flag('pending', template_type='GCS_WRITE_FILE',
         help='Output prefix for pending records, as JSONL (default: '
         '<output>_pending).'),
    outputs.DEAD_LETTER_FILES,
    outputs.NUM_SHARDS,
)
Options = flags.options_class('TwoPhase', FLAGS)


def build_parser():
  """The job's flags: --help, validation, README and the Flex Template
  metadata all derive from FLAGS."""
  return flags.parser('python -m pipelines.two_phase', DESCRIPTION, FLAGS)


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


class Job:
  """The job's resolved configuration: every flag checked, once, before
  anything runs; what `build` composes the pipeline from."""

  def __init__(self, args, options):
    from models.runtime import signatures as sigs
    from models.runtime.signatures import TensorSpec
    self.args = args
    for flag in ('phase1_batch_size', 'phase2_batch_size'):
      if getattr(args, flag) < 1:
        raise launch.UsageError(f'--{flag}', 'must be at least 1')
    if args.inference_threads is not None and args.inference_threads < 0:
      raise launch.UsageError('--inference_threads', 'must be at least 0')
    self.local = local_runner.is_local(options)
    self.patterns = inputs.patterns_of(args.input)
    inputs.check_patterns(self.patterns)
    self.text_spec = {args.phase2_input: TensorSpec('string', (-1,))}
    self.feature_map = {args.phase2_input: args.text_field}
    if args.replay_pending:
      self.input, self.rule = None, None
      if args.max_text_bytes < 1:
        raise launch.UsageError('--max_text_bytes', 'must be at least 1')
    else:
      input_format = inputs.resolve_format(args.input_format, self.patterns)
      self.input = inputs.keyed_input_config(
          args, args.phase1_batch_size, self.local, self.patterns,
          input_format, chunk_flag='phase1_batch_size')
      inputs.check_fields(
          self.patterns, input_format, self.input.key_rule,
          {args.text_field: ('--text_field', 'the text both phases read')})
      self.rule = _check_phase1(args)
    self.phase2_unavailable = _check_phase2(args)
    self.phase2_handler = None if self.phase2_unavailable else (
        SignatureModelHandler(
            args.phase2_model_dir, [args.phase2_input],
            signature=args.phase2_signature, feature_map=self.feature_map,
            model_version=sigs.default_model_version(args.phase2_model_dir),
            batch_size=args.phase2_batch_size,
            share_across_processes=model.shares_model(args, options)))
    self.threads = (args.inference_threads if args.inference_threads is not None
                    else default_threads(self.local))
    # '_pending', not '-pending': when the decisions are finalized, Beam
    # deletes stale shards matching '<output>-*-of-NNNNN.jsonl', which would
    # include a '<output>-pending-00000-of-00001.jsonl' written moments
    # earlier.
    self.pending = args.pending or f'{args.output}_pending'
    self.dead_letter = args.dead_letter or f'{args.output}_errors'
    for flag, prefix in (('--output', args.output), ('--pending', self.pending),
                         ('--dead_letter', self.dead_letter)):
      outputs.check_writable(flag, prefix)


def build(pipeline, job):
  """Composes the job on `pipeline`; returns the cascade.Cascaded outputs
  of each part of the input (see transforms.keyed.keyed_input.KeyedChunks).

  The hot path moves chunks of records: read -> key and validate -> phase 1
  -> route -> phase 2 -> write, as batch_predict does.
  """
  args = job.args
  if job.phase2_unavailable:
    logging.warning('phase 2 unavailable (%s): forwarded records go to '
                    'pending', job.phase2_unavailable)
  else:
    local_runner.host_shared_model(pipeline, job.phase2_handler)

  def phase2(label):
    return f'Phase 2{label}' >> cascade.Phase2(
        job.phase2_handler, args.phase2_output, job.phase2_unavailable,
        job.threads)

  if args.replay_pending:
    parts, dead = _pending_chunks(pipeline, job)
    cascades = [chunks | phase2(label) for label, chunks in parts.items()]
  else:
    keyed = pipeline | 'Keyed input' >> KeyedInput(
        job.input, job.text_spec, job.feature_map)
    parts, dead = keyed.parts, [keyed.dead_letter]
    phase1 = TFLiteTextModelHandler(args.phase1_model, args.text_field,
                                    batch_size=args.phase1_batch_size)
    cascades = [
        chunks | f'Two phases{label}' >> cascade.TwoPhaseCascadeChunks(
            phase1, job.rule, phase2(label), job.threads)
        for label, chunks in parts.items()]
  dead += [c.dead_letter for c in cascades]

  _ = tuple(c.decisions for c in cascades) | 'Write decisions' >> (
      sinks.WriteJsonLineChunks(args.output, args.num_shards))
  _ = (tuple(c.pending for c in cascades)
       | 'All pending' >> beam.Flatten()
       | 'Write pending' >> sinks.WriteJsonLines(job.pending, args.num_shards))
  _ = (dead
       | 'All dead letters' >> beam.Flatten()
       | 'Write dead letters' >> sinks.WriteDeadLetters(job.dead_letter))
  return cascades


def _pending_chunks(pipeline, job):
  """--replay_pending: pending records -> ({'': chunks of (key, record)
  carrying their phase-1 result}, dead letters)."""
  args = job.args
  read = pipeline | 'Read' >> sources.ReadRecords(job.patterns, 'jsonl')
  keyed = read.main | 'From pending' >> cascade.FromPending()
  dead = [read.dead_letter, keyed.dead_letter]
  unique = keyed.main
  if not args.allow_duplicate_keys:
    deduped = unique | 'Deduplicate keys' >> keys.DeduplicateKeys(
        bucketed=job.local)
    unique = deduped.main
    dead.append(deduped.dead_letter)
  valid = unique | 'Validate text' >> ValidateFeatures(
      job.text_spec, job.feature_map, args.max_text_bytes)
  dead.append(valid.dead_letter)
  return {'': valid.main | 'Chunk' >> ChunkRecords(args.phase2_batch_size)}, dead


def run(argv=None):
  """Runs the job; returns the summary figures as a dict."""
  job, result, elapsed = launch.run_batch_job(
      argv, build_parser(), FLAGS, Job, build)
  args = job.args

  counts = summary.counters(result)
  phases = counts.get(cascade.NAMESPACE, {})
  read = counts.get('read', {}).get(sources.RECORDS, 0)
  by_phase1 = phases.get('decided_by_phase1', 0)
  by_phase2 = phases.get('decided_by_phase2', 0)
  forwarded = phases.get('forwarded', 0)
  pending = phases.get('pending', 0)
  by_reason = summary.dead_letters_by_reason(counts)
  dead_total = sum(by_reason.values())
  scored = by_phase1 + forwarded
  figures = {
      'inputs': read, 'decided_by_phase1': by_phase1,
      'forwarded': forwarded, 'decided_by_phase2': by_phase2,
      'pending': pending, 'dead_letters': dead_total,
      'dead_letters_by_reason': by_reason,
      'forward_rate': round(forwarded / scored, 4) if scored else 0.0,
      'elapsed_s': round(elapsed, 2),
      'records_per_s': round(read / elapsed, 1) if elapsed else 0.0,
      'phase2_unavailable': job.phase2_unavailable,
      'reconciled': read == by_phase1 + by_phase2 + pending + dead_total,
  }
  rows = [('inputs', read)]
  if not args.replay_pending:
    rows += [('decided by phase 1', by_phase1), ('forwarded', forwarded),
             ('forward rate', f'{figures["forward_rate"]:.1%}')]
  rows += [
      ('decided by phase 2', by_phase2), ('pending', pending),
      ('dead letters', dead_total), ('dead letters by reason', by_reason),
      *summary.input_rows(counts),
      ('elapsed (s)', elapsed), ('records/second', figures['records_per_s']),
      ('inputs = decisions + pending + dead letters',
       'yes' if figures['reconciled'] else 'NO'),
      ('decisions under', f'{args.output}*'),
      ('pending under', f'{job.pending}*'),
      ('dead letters under', f'{job.dead_letter}*'),
  ]
  if job.phase2_unavailable:
    rows.append(('phase 2 unavailable', job.phase2_unavailable))
  print(summary.format_summary('two_phase summary', rows))
  warning = summary.one_reason_warning(read, by_reason)
  if warning:
    print(warning)
  return figures


def main(argv=None):
  """The `rs-two-phase` command: run() with one-line usage errors (exit 2)."""
  return launch.main(run, argv)


if __name__ == '__main__':
  sys.exit(main())
