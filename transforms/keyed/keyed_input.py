"""Keyed, validated chunks of records: the hot-path input of the model jobs.

batch_predict and two_phase take sharded inputs to a model the same way:
chunks of records (transforms.record_chunks) are keyed and validated in one
step; the few records whose key repeats take a side path (grouped, one kept,
validated) and rejoin as chunks of their own. Declared once here, so the two
jobs keep the same rules, dead letters and speed.
"""
from pipelines import launch
from transforms.io import bigquery
from transforms.keyed import keys
from transforms.io import line_ranges
from transforms.io import sources
from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import Routed
from transforms.keyed.features import ValidateFeatures
from transforms.keyed.keyed_chunks import DUPLICATED
from transforms.keyed.keyed_chunks import KeyAndValidateChunks
from transforms.record_chunks import ChunkRecords


def add_inference_threads_argument(parser):
  parser.add_argument(
      '--inference_threads', type=int,
      help='Model calls in flight at once per worker process, overlapping '
      'the model with the Python steps (0: one at a time, in the worker '
      'thread). Default: on local runners one more than the CPU cores, at '
      'most 4; on distributed runners 0.')


def check_inference_threads(args):
  if args.inference_threads is not None and args.inference_threads < 0:
    raise launch.UsageError('--inference_threads', 'must be at least 0')


def inference_threads(args, local):
  """--inference_threads, or its default: on a local runner one more than
  the cores (at most 4; measured best on 2 cores: 3), so the model keeps
  every core busy while the worker thread does the Python steps; elsewhere 0
  (a distributed runner already runs a worker per core)."""
  if args.inference_threads is not None:
    return args.inference_threads
  return min(4, launch.usable_cores() + 1) if local else 0


def read_chunks(pipeline, patterns, input_format, chunk_size, table=None,
                query=None):
  """Routed(chunks of dict records, dead letters) from files or BigQuery."""
  if input_format in line_ranges.LINE_FORMATS:
    return pipeline | 'Read' >> line_ranges.ReadLineChunks(
        patterns, input_format, chunk_size)
  if patterns:
    read = pipeline | 'Read' >> sources.ReadRecords(patterns, input_format)
  else:
    read = pipeline | 'Read' >> bigquery.ReadTable(table=table, query=query)
  return Routed(read.main | 'Chunk' >> ChunkRecords(chunk_size),
                read.dead_letter)


def _duplicate_keys(pipeline, args, patterns, input_format, read, chunk_size,
                    local):
  """(key, count) of keys seen more than once. Line files are read a second
  time for their keys alone: records then never wait for (or are held
  until) the check. Other sources share the read, which the runner may
  materialize."""
  if input_format in line_ranges.LINE_FORMATS:
    key_source = (pipeline | 'Read keys' >> line_ranges.ReadLineChunks(
        patterns, input_format, chunk_size, quiet=True)).main
  else:
    key_source = read.main
  return key_source | 'Find duplicate keys' >> keys.FindDuplicateKeys(
      args.key_field, args.attach_keys, in_memory=local)


def keyed_valid_chunks(pipeline, args, patterns, input_format, read,
                       input_specs, feature_map, chunk_size):
  """Chunks of valid (key, record), in parts, and the dead letters.

  Returns ({label: chunks}, [dead-letter PCollections]): '' holds the records
  with a key of their own, ' kept duplicates' (unless
  --allow_duplicate_keys) the one record kept per repeated key. The parts
  stay apart so that each is fused with the steps after it.
  """
  local = launch.is_local_runner(pipeline.options)
  duplicates = None
  if not args.allow_duplicate_keys:
    duplicates = _duplicate_keys(pipeline, args, patterns, input_format, read,
                                 chunk_size, local)
  checked = read.main | 'Key and validate' >> KeyAndValidateChunks(
      args.key_field, args.attach_keys, input_specs, feature_map,
      args.max_text_bytes, duplicates)
  dead = [read.dead_letter, checked[DEAD_LETTER]]
  parts = {'': checked.main}
  if duplicates is not None:
    deduped = checked[DUPLICATED] | 'Deduplicate keys' >> keys.DeduplicateKeys(
        bucketed=local)
    kept = deduped.main | 'Validate kept duplicates' >> ValidateFeatures(
        input_specs, feature_map, args.max_text_bytes)
    dead += [deduped.dead_letter, kept.dead_letter]
    parts[' kept duplicates'] = kept.main | 'Chunk kept duplicates' >> (
        ChunkRecords(chunk_size))
  return parts, dead
