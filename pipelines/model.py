"""The model flags of the serving jobs, and the handler built from them.

batch_predict and stream_predict serve one SavedModel signature the same
way: the model and signature are read (not loaded) while the job is built,
so a wrong flag is one line before anything runs, and the handler that
RunInference loads on the workers is built here once.
"""
from pipelines import launch
from pipelines import local_runner
from pipelines.flags import Flag
from pipelines.flags import split_list
from transforms.inference.signature_handler import DEFAULT_BATCH_SIZE
from transforms.inference.signature_handler import SignatureModelHandler

MODEL = (
    Flag('model_dir', required=True,
         help='SavedModel directory: local path, gs:// path or TF-Hub '
         'handle.'),
    Flag('signature', default='serving_default',
         help='Serving signature to call (default: serving_default).'),
    Flag('model_version',
         help='Version recorded on every prediction (default: derived from '
         '--model_dir, e.g. "sentiment/1").'),
    Flag('feature_map', default='',
         help='Comma-separated INPUT=FIELD pairs mapping signature inputs to '
         'record fields, e.g. "reviews=text"; unmapped inputs read the field '
         'of the same name.'),
    Flag('passthrough_fields', default='',
         help='Comma-separated input fields copied into each output record.'),
    Flag('batch_size', type=int, default=DEFAULT_BATCH_SIZE,
         help=f'Records per model call (default: {DEFAULT_BATCH_SIZE}).'),
)
INFERENCE_THREADS = Flag(
    'inference_threads', type=int,
    help='Model calls in flight at once per worker process, overlapping the '
    'model with the Python steps (0: one at a time, in the worker thread). '
    'Default: on local runners one more than the CPU cores, at most 4; on '
    'distributed runners 0.')
SHARE_MODEL = Flag(
    'share_model', choices=('auto', 'true', 'false'), default='auto',
    help='Load the model once per machine and serve it to every worker '
    'process there (Beam\'s large_model / multi_process_shared), instead of '
    'a copy per process. auto (default): on where the runner starts several '
    'worker processes per machine (--direct_running_mode=multi_processing '
    'with --direct_num_workers above 1; Dataflow, one process per vCPU), '
    'off where one process holds the model anyway.')
PREDICTION_LOG = (
    Flag('model_name',
         help='Model name recorded in the prediction log (default: derived '
         'from --model_dir, e.g. "sentiment").'),
    Flag('prediction_log', template_type='GCS_WRITE_FILE',
         help='Output prefix for a sampled prediction log (JSONL rows: model, '
         'model_version, time, key, raw_data, raw_prediction, groundtruth) '
         'that pipelines.evaluate joins with ground truth later.'),
    Flag('log_sample_rate', type=float, default=1.0,
         help='Share of keys written to --prediction_log, 0..1 (default 1); '
         'chosen by a hash of the key, so reruns log the same keys.'),
)


def check_counts(args):
  """The numeric model flags' ranges."""
  if args.batch_size < 1:
    raise launch.UsageError('--batch_size', 'must be at least 1')
  threads = getattr(args, 'inference_threads', None)
  if threads is not None and threads < 0:
    raise launch.UsageError('--inference_threads', 'must be at least 0')
  if not 0 <= args.log_sample_rate <= 1:
    raise launch.UsageError('--log_sample_rate', 'must be between 0 and 1')


def read_signature(model_dir, name):
  """The signature `name` of the SavedModel at `model_dir`, read without
  loading the model; a missing model or signature is one usage line."""
  from models.runtime import signatures as sigs
  try:
    return sigs.get_signature(model_dir, name)
  except sigs.SignatureNotFound as e:
    raise launch.UsageError('--signature', str(e))
  except (OSError, IOError, ValueError) as e:
    raise launch.UsageError(
        '--model_dir', f'cannot read a SavedModel at {model_dir!r}: {e}')


def feature_map(text, signature):
  """{signature input: record field} from --feature_map INPUT=FIELD pairs."""
  mapping = {}
  for pair in split_list(text):
    name, sep, field = pair.partition('=')
    if not sep or not name.strip() or not field.strip():
      raise launch.UsageError('--feature_map', f'{pair!r} is not INPUT=FIELD')
    mapping[name.strip()] = field.strip()
  unknown = sorted(set(mapping) - set(signature.inputs))
  if unknown:
    raise launch.UsageError(
        '--feature_map', f'unknown signature input(s) {unknown}; signature '
        f'{signature.name!r} takes {sorted(signature.inputs)}')
  return mapping


def input_fields(signature, features):
  """{record field: ('--feature_map', the signature input it feeds)}, for
  inputs.check_fields."""
  return {features.get(name, name): ('--feature_map',
                                     f'signature input {name!r}')
          for name in signature.inputs}


def check_files(model_dir):
  """The model's fingerprint, once its files are checked whole
  (models.runtime.model_files); a damaged or half-copied model is one usage
  line before anything runs."""
  from models.runtime import model_files
  from models.runtime import signatures as sigs
  try:
    return model_files.verify(sigs.resolve_model_dir(model_dir))
  except model_files.ModelFilesError as e:
    raise launch.UsageError('--model_dir', str(e))


def shares_model(args, options):
  """Whether this job's model is shared by the worker processes of a
  machine (--share_model; see its help for `auto`)."""
  if args.share_model != 'auto':
    return args.share_model == 'true'
  from apache_beam.options.pipeline_options import DebugOptions  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel
  if local_runner.runner_name(options) in ('DataflowRunner',
                                           'TestDataflowRunner'):
    # Dataflow runs one SDK process per vCPU unless told otherwise.
    return not options.view_as(DebugOptions).lookup_experiment(
        'no_use_multiple_sdk_containers')
  return (local_runner.runs_worker_processes(options) and
          options.view_as(DirectOptions).direct_num_workers != 1)


def handler(args, signature, features, **batching):
  """The SignatureModelHandler of the MODEL flags; `batching` passes
  RunInference's batching bounds (streaming: max_batch_duration_secs).
  Workers load only the files checked here (check_files)."""
  from models.runtime import signatures as sigs
  return SignatureModelHandler(
      args.model_dir, list(signature.inputs), signature=signature.name,
      feature_map=features,
      model_version=args.model_version or sigs.default_model_version(
          args.model_dir),
      batch_size=args.batch_size, fingerprint=check_files(args.model_dir),
      **batching)


def model_name(args):
  """The model's name in the prediction log, or None without a log."""
  if not args.prediction_log:
    return None
  from models.runtime import signatures as sigs
  return args.model_name or sigs.default_model_name(args.model_dir)
