"""What both protocols share: one model, one micro-batcher, one prediction log.

TF Serving's v1 routes and the Open Inference Protocol's v2 routes only
translate their wire formats to and from rows (a `PredictRequest` in,
predictions out). Everything between is here, once: the model call (in a
worker thread, or through the micro-batcher), client keys put back, the
prediction log, the request counters and the server's own log lines.

When the model fails on a request of several instances, the instances are
retried in halves to find the first one it fails on alone, so the 500 can
name it (the batch job dead-letters that record; online, the client learns
which instance to look at). This costs about 2*log2(n) extra model calls,
only on failure.
"""
import asyncio
import contextlib
import logging

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.responses import Response

from models.runtime.predictor import InputError
from serving import errors
from serving import request as req
from serving import stats as stats_lib
from serving.batcher import BatcherClosed
from serving.batcher import MicroBatcher
from serving.prediction_log import PredictionLogWriter

LOG = logging.getLogger('serving')


def first_failing(predict, instances, signature_name):
  """Index of the first instance that `predict` fails on by itself, or None
  when every instance alone succeeds (a failure of the batch as a whole)."""
  lo, hi = 0, len(instances)  # instances[lo:hi] holds the first failure
  while hi - lo > 1:
    mid = (lo + hi) // 2
    try:
      predict(instances[lo:mid], signature_name)
    except Exception:  # pylint: disable=broad-except
      hi = mid
    else:
      lo = mid
  try:
    predict(instances[lo:lo + 1], signature_name)
  except Exception:  # pylint: disable=broad-except
    return lo
  return None


def version_id(model_version):
  """The version as one URL segment, for /v2/models/NAME/versions/V:
  'sentiment/1' -> '1'."""
  return model_version.rstrip('/').rsplit('/', 1)[-1]


class PredictionService:
  """The predictor and what runs around it, for one configured model."""

  def __init__(self, config, predictor):
    self.config = config
    self.predictor = predictor
    self.version = version_id(config.model_version)
    self.ready = False
    self.stats = stats_lib.RequestStats()
    self.batcher = (MicroBatcher(predictor.predict, config.micro_batch_size,
                                 config.micro_batch_timeout_ms)
                    if config.micro_batching else None)
    self.log_writer = (PredictionLogWriter(
        config.prediction_log_dir, config.model_name, config.model_version,
        rate=config.prediction_log_rate,
        max_rows=config.prediction_log_max_rows,
        max_seconds=config.prediction_log_max_seconds)
                       if config.prediction_log_dir else None)
    self._stats_task = None

  def check_model(self, name, version=None):
    """404 when the URL names another model (or another version)."""
    if name != self.config.model_name:
      raise errors.ApiError(
          404, f'model {name!r} not found; this server serves '
               f'{self.config.model_name!r}')
    if version is not None and version != self.version:
      raise errors.ApiError(
          404, f'version {version!r} of model {name!r} not found; this server '
               f'serves version {self.version!r}')

  async def respond(self, work, what='prediction'):
    """Awaits `work()`, a coroutine returning a JSON body (or a Response),
    and answers it; whatever it raises becomes its JSON error response, and
    is counted."""
    try:
      result = await work()
    except Exception as e:  # pylint: disable=broad-except
      response = errors.response_for(e, what)
      self.stats.errored(response.status_code)
      return response
    return result if isinstance(result, Response) else JSONResponse(result)

  async def predict(self, parsed):
    """Predictions (client keys first) for a checked `PredictRequest`; the
    answered instances go to the prediction log."""
    try:
      outputs = await self._call_model(parsed.model_instances,
                                       parsed.signature_name)
    except (InputError, BatcherClosed):
      raise
    except Exception as e:  # the model failed: find the instance, if one
      instance = None
      if len(parsed.model_instances) > 1:
        instance = await run_in_threadpool(
            first_failing, self.predictor.predict, parsed.model_instances,
            parsed.signature_name)
      raise errors.ModelFailure(e, instance) from e
    predictions = req.with_keys(outputs, parsed.keys)
    if self.log_writer is not None:
      self.log_writer.log(parsed.instances, parsed.keys, predictions)
    self.stats.answered(len(predictions))
    return predictions

  async def _call_model(self, instances, signature_name):
    if self.batcher is not None:
      return await self.batcher.predict(instances, signature_name)
    return await run_in_threadpool(
        self.predictor.predict, instances, signature_name)

  @contextlib.asynccontextmanager
  async def lifespan(self, app):
    """Starts the batcher, the log writer and the stats line; at shutdown
    stops them (the prediction log is flushed and published) and logs the
    run's totals."""
    del app
    if self.batcher is not None:
      self.batcher.start()
    if self.log_writer is not None:
      self.log_writer.start()
    if self.config.stats_log_seconds:
      self._stats_task = asyncio.get_running_loop().create_task(
          self._log_stats(self.config.stats_log_seconds))
    self.ready = True
    self._log_startup()
    try:
      yield
    finally:
      self.ready = False
      await self._stop()

  async def _stop(self):
    if self._stats_task is not None:
      self._stats_task.cancel()
      with contextlib.suppress(asyncio.CancelledError):
        await self._stats_task
    if self.batcher is not None:
      await self.batcher.close()
    if self.log_writer is not None:
      await run_in_threadpool(self.log_writer.close)
      LOG.info('prediction log: %d rows written, %d requests dropped',
               self.log_writer.rows_written, self.log_writer.dropped)
    LOG.info('stopped after %s',
             stats_lib.describe(self.stats.total, self.batcher))

  def _log_startup(self):
    config = self.config
    LOG.info('model %r version %r (v2 version %r) loaded from %s',
             config.model_name, config.model_version, self.version,
             config.model_dir)
    for name, sig in sorted(self.predictor.signatures.items()):
      LOG.info('signature %r: %s -> %s', name, _tensors(sig.inputs),
               _tensors(sig.outputs))
    LOG.info('micro-batching: %s', (
        f'up to {config.micro_batch_size} instances, '
        f'{config.micro_batch_timeout_ms:g} ms window'
        if self.batcher is not None else 'off'))
    LOG.info('prediction log: %s', (
        f'{config.prediction_log_dir} (rate {config.prediction_log_rate:g})'
        if self.log_writer is not None else 'off'))

  async def _log_stats(self, seconds):
    while True:
      await asyncio.sleep(seconds)
      interval = self.stats.take_interval()
      if interval:
        LOG.info('last %g s: %s', seconds,
                 stats_lib.describe(interval, self.batcher))


def _tensors(specs):
  return ', '.join(f'{name} {spec.describe()}' for name, spec in specs.items())
