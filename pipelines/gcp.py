"""Construction-time checks shared by pipelines that use Google Cloud I/O.

Beam itself, when Application Default Credentials are missing, logs a warning
and connects anonymously: the job then fails much later, inside a worker, with
a 401 from BigQuery or Cloud Storage. These checks turn that into one line
naming the flag, before anything runs (see pipelines.launch).
"""
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipelines.launch import UsageError
from transforms.io import bigquery
NO_CREDENTIALS = (
    'no Google Cloud credentials found (Application Default Credentials): '
    'run `gcloud auth application-default login`, or set '
    'GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on '
    'Google Cloud with a service account')


def check_credentials(options, flag):
  """Raises UsageError(flag, ...) when Google Cloud needs credentials that
  cannot be found. `--no_auth` (offline graph builds) skips the check."""
  if options.view_as(GoogleCloudOptions).no_auth:
    return
  import google.auth
  from google.auth import exceptions
  try:
    google.auth.default()
  except exceptions.DefaultCredentialsError:
    raise UsageError(flag, NO_CREDENTIALS) from None


def check_table(flag, spec):
  """Raises UsageError unless `spec` is project:dataset.table."""
  if spec is None:
    return
  try:
    bigquery.parse_table(spec)
  except ValueError as e:
    raise UsageError(flag, str(e)) from None


def check_write_method(method, options):
  """FILE_LOADS stages files on Cloud Storage: it needs a gs:// location."""
  if method != bigquery.FILE_LOADS:
    return
  cloud = options.view_as(GoogleCloudOptions)
  location = cloud.temp_location or ''
  if not location.startswith('gs://'):
    raise UsageError(
        '--temp_location', f'--bq_write_method {method} stages files on Cloud '
        'Storage: pass --temp_location gs://BUCKET/tmp, or --bq_write_method '
        f'{bigquery.STREAMING_INSERTS}')


def first_cloud_flag(flags):
  """The first (flag, value) whose value is a BigQuery table/query or a
  gs:// path, or None: the flag a missing-credentials error names."""
  for flag, value in flags:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
      if v and (flag.endswith(('_table', '_query')) or
                str(v).startswith('gs://')):
        return flag
  return None
