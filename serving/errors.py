"""Errors the endpoint answers with, always as JSON `{"error": "..."}`.

TensorFlow Serving's REST API reports failures as `{"error": message}`; clients
written for it (and for Vertex AI) read that field, so every failure here,
including 404/405 from routing and unexpected exceptions, uses that shape.

Client mistakes name the problem (400, 404, 413). Server-side failures (500)
never echo exception text or tracebacks, which could leak model internals or
file paths: they carry an id that is logged with the full traceback instead.
"""
import logging
import uuid

from starlette.responses import JSONResponse

LOG = logging.getLogger('serving')


class ApiError(Exception):
  """A request problem to report with `status` and a message for the client."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status = status
    self.message = message


def bad_request(message):
  return ApiError(400, message)


def error_response(status, message):
  return JSONResponse({'error': message}, status_code=status)


def internal_error(what, exc):
  """Logs `exc` with a fresh id and returns a 500 that names only the id."""
  error_id = uuid.uuid4().hex[:12]
  LOG.error('%s failed (error id %s)', what, error_id,
            exc_info=(type(exc), exc, exc.__traceback__))
  return error_response(
      500, f'internal error during {what}; see the server log for error id '
           f'{error_id}')


async def http_exception(request, exc):
  """Starlette's routing errors (404 unknown path, 405 wrong method) as JSON."""
  del request
  return error_response(exc.status_code, exc.detail)


async def unhandled_exception(request, exc):
  """Last resort: anything that escaped a route becomes a JSON 500."""
  return internal_error(f'{request.method} {request.url.path}', exc)
