"""The endpoint's settings, declared once.

`build_parser()` is the single declaration of every flag (with its help text);
`--help`, validation and the docs table come from it. `parse(argv)` turns a
command line into a frozen `ServingConfig`, failing early with one line and
exit code 2 (argparse's convention) for a bad value, before any model loads.

Vertex AI custom containers pass the port, routes and model in AIP_HTTP_PORT,
AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE and AIP_STORAGE_URI; those become the
defaults when set, and with AIP_HTTP_PORT the server listens on 0.0.0.0
(Vertex AI connects from outside the container), so the image needs no flags.
"""
import argparse
import dataclasses
import os

from models.runtime import signatures as sigs
from common.feature_rule import DEFAULT_MAX_TEXT_BYTES

DEFAULT_PORT = 8080
LOOPBACK = '127.0.0.1'
ALL_INTERFACES = '0.0.0.0'
# Vertex AI's online prediction request limit; a sane default for any client.
DEFAULT_MAX_BODY_BYTES = 1_572_864


@dataclasses.dataclass(frozen=True)
class ServingConfig:
  model_dir: str
  model_name: str
  model_version: str
  host: str = LOOPBACK
  port: int = DEFAULT_PORT
  max_instances: int = 1000
  max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
  max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
  micro_batch_size: int = 0
  micro_batch_timeout_ms: float = 5.0
  prediction_log_dir: str | None = None
  prediction_log_rate: float = 1.0
  prediction_log_max_rows: int = 10000
  prediction_log_max_seconds: float = 60.0
  max_concurrent_requests: int | None = None
  predict_route: str | None = None
  health_route: str | None = None
  access_log: bool = False
  log_level: str = 'info'
  stats_log_seconds: float = 60.0

  @property
  def micro_batching(self):
    return self.micro_batch_size > 0


def default_model_name(model_dir):
  """'.../sentiment/1' -> 'sentiment' (TF Serving's <name>/<version> layout).

  ':' would end the name in '/v1/models/NAME:predict', so it is replaced.
  """
  return sigs.default_model_version(model_dir).split('/')[0].replace(':', '-')


def _positive_int(text):
  value = int(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
  return value


def _non_negative_int(text):
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f'must be >= 0, got {text}')
  return value


def _positive_float(text):
  value = float(text)
  if not value > 0:
    raise argparse.ArgumentTypeError(f'must be > 0, got {text}')
  return value


def _rate(text):
  value = float(text)
  if not 0 <= value <= 1:
    raise argparse.ArgumentTypeError(f'must be between 0 and 1, got {text}')
  return value


def _route(text):
  if not text.startswith('/'):
    raise argparse.ArgumentTypeError(f'must start with "/", got {text!r}')
  return text


def _non_negative_float(text):
  value = float(text)
  if not value >= 0:
    raise argparse.ArgumentTypeError(f'must be >= 0, got {text}')
  return value


def _model_flags(group, env):
  """The model to serve; Vertex AI names it in AIP_STORAGE_URI."""
  storage_uri = env.get('AIP_STORAGE_URI')
  group.add_argument(
      '--model_dir', required=storage_uri is None, default=storage_uri,
      help='SavedModel directory (local, gs:// or a TF-Hub handle), loaded '
           'once at start (default $AIP_STORAGE_URI, where Vertex AI puts '
           'the model\'s artifacts).')
  group.add_argument(
      '--model_name',
      help='Name in the URL /v1/models/NAME; default: the model directory '
           'name (".../sentiment/1" -> "sentiment").')
  group.add_argument(
      '--model_version',
      help='Version recorded in the prediction log and reported by the '
           'status route; default: derived from the path ("sentiment/1").')


def _server_flags(group, env):
  """Address, routes and logging; Vertex AI sets the AIP_* ones."""
  group.add_argument(
      '--host', default=ALL_INTERFACES if 'AIP_HTTP_PORT' in env else LOOPBACK,
      help=f'Address to listen on (default {LOOPBACK}; {ALL_INTERFACES} when '
           '$AIP_HTTP_PORT is set, as in a Vertex AI container).')
  group.add_argument(
      '--port', type=int, default=int(env.get('AIP_HTTP_PORT', DEFAULT_PORT)),
      help=f'TCP port (default $AIP_HTTP_PORT or {DEFAULT_PORT}).')
  group.add_argument(
      '--max_concurrent_requests', type=_positive_int,
      help='Connections+requests handled at once; more get HTTP 503 '
           '(default: no limit).')
  group.add_argument(
      '--predict_route', type=_route, default=env.get('AIP_PREDICT_ROUTE'),
      help='Extra path that also serves :predict for the configured model '
           '(default $AIP_PREDICT_ROUTE, for Vertex AI custom containers).')
  group.add_argument(
      '--health_route', type=_route, default=env.get('AIP_HEALTH_ROUTE'),
      help='Extra path that answers like /readyz (default $AIP_HEALTH_ROUTE).')
  group.add_argument(
      '--access_log', action='store_true',
      help='Log one line per request (off by default: it costs latency).')
  group.add_argument(
      '--log_level', default='info',
      choices=['critical', 'error', 'warning', 'info', 'debug'],
      help='Server log level (default info).')
  group.add_argument(
      '--stats_log_seconds', type=_non_negative_float, default=60.0,
      help='Seconds between INFO lines counting the requests answered, '
           'refused and failed (only when there were any); 0 turns them off '
           '(default 60).')


def _limit_flags(group):
  """What one request may hold."""
  group.add_argument(
      '--max_instances', type=_positive_int, default=1000,
      help='Most instances in one request (default 1000).')
  group.add_argument(
      '--max_body_bytes', type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
      help=f'Largest request body in bytes (default {DEFAULT_MAX_BODY_BYTES}, '
           'Vertex AI\'s limit).')
  group.add_argument(
      '--max_text_bytes', type=_positive_int, default=DEFAULT_MAX_TEXT_BYTES,
      help='Longest text input in UTF-8 bytes; longer (and empty) texts get '
           'HTTP 400, by the rule the batch job dead-letters them with '
           f'(default {DEFAULT_MAX_TEXT_BYTES}).')


def _batching_flags(group):
  """Merging concurrent requests into one model call."""
  group.add_argument(
      '--micro_batch_size', type=_non_negative_int, default=0,
      help='Accumulate instances from concurrent requests into one model call '
           'of up to this many instances; 0 turns micro-batching off '
           '(default 0).')
  group.add_argument(
      '--micro_batch_timeout_ms', type=_positive_float, default=5.0,
      help='Longest time the oldest waiting request is held to fill a batch '
           '(default 5 ms).')


def _prediction_log_flags(group):
  """Sampled predictions for continuous evaluation."""
  group.add_argument(
      '--prediction_log_dir',
      help='Write sampled predictions as JSONL rows in the continuous-'
           'evaluation format to this local directory (default: off).')
  group.add_argument(
      '--prediction_log_rate', type=_rate, default=1.0,
      help='Fraction of keys logged, chosen by a hash of the key so reruns '
           'log the same keys (default 1.0).')
  group.add_argument(
      '--prediction_log_max_rows', type=_positive_int, default=10000,
      help='Rows per log file before it is closed and a new one started '
           '(default 10000).')
  group.add_argument(
      '--prediction_log_max_seconds', type=_positive_float, default=60.0,
      help='Seconds a log file stays open before it is closed and renamed to '
           '*.jsonl (default 60).')


def build_parser():
  env = os.environ
  parser = argparse.ArgumentParser(
      prog='python -m serving',
      description=(
          'Serves a SavedModel over the TensorFlow Serving / Vertex AI REST '
          'predict protocol (POST /v1/models/NAME:predict with '
          '{"instances": [...]}) and the Open Inference Protocol (KServe v2: '
          'POST /v2/models/NAME/infer with typed tensors).'))
  _model_flags(parser.add_argument_group('model'), env)
  _server_flags(parser.add_argument_group('server'), env)
  _limit_flags(
      parser.add_argument_group('limits (violations get HTTP 400/413)'))
  _batching_flags(parser.add_argument_group('micro-batching'))
  _prediction_log_flags(
      parser.add_argument_group('prediction log (continuous evaluation)'))
  return parser


def parse(argv=None):
  """Returns a ServingConfig; bad flags exit with one line and status 2."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if not 0 <= args.port <= 65535:
    parser.error(f'argument --port: must be 0..65535, got {args.port}')
  if args.model_name is not None and (
      not args.model_name or any(c in args.model_name for c in '/:')):
    parser.error('argument --model_name: must be non-empty, without "/" or ":"')
  values = vars(args)
  values['model_name'] = args.model_name or default_model_name(args.model_dir)
  values['model_version'] = (
      args.model_version or sigs.default_model_version(args.model_dir))
  return ServingConfig(**values)
