"""Errors the endpoint answers with, always as JSON `{"error": "..."}`.

TensorFlow Serving's REST API reports failures as `{"error": message}`; clients
written for it (and for Vertex AI) read that field, so every failure here,
including 404/405 from routing and unexpected exceptions, uses that shape.

The Open Inference Protocol (KServe v2) reports errors in the same shape, so
both protocols share this module: `response_for` is the one mapping from
what went wrong to the status and message a client sees.

Client mistakes name the problem (400, 404, 413, 415). Server-side failures
(500) never echo exception text or tracebacks, which could leak model
internals or file paths: they carry an id that is logged with the full
traceback instead (and, when the server could find it, the index of the
instance the model fails on).
"""
import logging
import uuid

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from models.runtime.predictor import InputError
from serving.batcher import BatcherClosed

LOG = logging.getLogger('serving')


class ApiError(Exception):
  """A request problem to report with `status` and a message for the client."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status = status
    self.message = message


def bad_request(message):
  return ApiError(400, message)


class ModelFailure(Exception):
  """The model itself failed on a request. `instance` is the index (within
  the request) of the first instance it also fails on alone, or None."""

  def __init__(self, cause, instance=None):
    super().__init__(f'{type(cause).__name__} (instance {instance})')
    self.cause = cause
    self.instance = instance


def error_response(status, message):
  return JSONResponse({'error': message}, status_code=status)


def internal_error(what, exc, note=''):
  """Logs `exc` with a fresh id and returns a 500 that names only the id
  (and `note`, which must not come from the exception)."""
  error_id = uuid.uuid4().hex[:12]
  LOG.error('%s failed (error id %s)%s', what, error_id, note,
            exc_info=(type(exc), exc, exc.__traceback__))
  return error_response(
      500, f'internal error during {what}; see the server log for error id '
           f'{error_id}{note}')


def response_for(exc, what='prediction'):
  """The JSON error response for anything a route raised while doing
  `what` (named in the log and the 500 message)."""
  if isinstance(exc, ApiError):
    return error_response(exc.status, exc.message)
  if isinstance(exc, InputError):
    return error_response(400, str(exc))
  if isinstance(exc, BatcherClosed):
    return error_response(503, 'server is shutting down')
  if isinstance(exc, ClientDisconnect):  # nobody to answer; not a 5xx either
    return error_response(400, 'client disconnected')
  if isinstance(exc, ModelFailure):
    note = ('' if exc.instance is None else
            f' (the model fails on instance {exc.instance})')
    return internal_error(what, exc.cause, note)
  return internal_error(what, exc)


async def http_exception(request, exc):
  """Starlette's routing errors (404 unknown path, 405 wrong method) as JSON."""
  del request
  return error_response(exc.status_code, exc.detail)


async def unhandled_exception(request, exc):
  """Last resort: anything that escaped a route becomes a JSON 500."""
  return internal_error(f'{request.method} {request.url.path}', exc)
