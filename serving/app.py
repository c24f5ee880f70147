"""The ASGI app: TensorFlow Serving / Vertex AI REST routes over one Predictor.

Routes (NAME is the configured model name):
  POST /v1/models/NAME:predict    {"instances": [...], "signature_name"?}
                                  -> {"predictions": [...]}
  GET  /v1/models/NAME            model status (TF Serving's shape)
  GET  /v1/models/NAME/metadata   the model's signatures, inputs and outputs
  GET  /healthz                   liveness: the process answers
  GET  /readyz                    readiness: model loaded, batcher running

The model is loaded once, before the app exists (`create_app` takes the
process-wide Predictor), never per request. The model call runs in a worker
thread (or through the micro-batcher), so the event loop keeps serving other
clients while TensorFlow computes.
"""
import contextlib
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor
from starlette.convertors import register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.runtime import predictor as predictor_lib
from models.runtime import signatures as sigs
from serving import errors
from serving import request as req
from serving.batcher import BatcherClosed
from serving.batcher import MicroBatcher
from serving.prediction_log import PredictionLogWriter

LOG = logging.getLogger('serving')


class _ModelNameConvertor(Convertor):
  """A path segment without ':' so 'NAME:predict' splits at the colon."""
  regex = '[^/:]+'

  def convert(self, value):
    return value

  def to_string(self, value):
    return str(value)


register_url_convertor('model', _ModelNameConvertor())


def signature_metadata(signatures):
  """{name: {"inputs": {tensor: {"dtype", "shape"}}, "outputs": {...}}};
  -1 in a shape is a dimension of any size (the batch)."""
  def specs(tensors):
    return {name: {'dtype': spec.dtype, 'shape': list(spec.shape)}
            for name, spec in tensors.items()}
  return {name: {'inputs': specs(sig.inputs), 'outputs': specs(sig.outputs)}
          for name, sig in sorted(signatures.items())}


def create_app(config, predictor=None):
  """Returns the Starlette app serving `predictor` (loaded now if None)."""
  if predictor is None:
    predictor = predictor_lib.load(config.model_dir)
  state = {'ready': False}
  batcher = (MicroBatcher(predictor.predict, config.micro_batch_size,
                          config.micro_batch_timeout_ms)
             if config.micro_batching else None)
  log_writer = (PredictionLogWriter(
      config.prediction_log_dir, config.model_name, config.model_version,
      rate=config.prediction_log_rate,
      max_rows=config.prediction_log_max_rows,
      max_seconds=config.prediction_log_max_seconds)
                if config.prediction_log_dir else None)

  def unknown_model(request):
    """A 404 response when the URL names another model, else None."""
    name = request.path_params['name']
    if name == config.model_name:
      return None
    return errors.error_response(
        404, f'model {name!r} not found; this server serves '
             f'{config.model_name!r}')

  async def run_model(parsed):
    if batcher is not None:
      return await batcher.predict(parsed.model_instances,
                                   parsed.signature_name)
    return await run_in_threadpool(
        predictor.predict, parsed.model_instances, parsed.signature_name)

  async def serve_predict(request):
    try:
      body = await req.read_body(request, config.max_body_bytes)
      parsed = req.parse_predict(
          req.decode_json(body), predictor, config.max_instances)
      predictions = req.with_keys(await run_model(parsed), parsed.keys)
      response = JSONResponse({'predictions': predictions})
    except errors.ApiError as e:
      return errors.error_response(e.status, e.message)
    except predictor_lib.InputError as e:
      return errors.error_response(400, str(e))
    except BatcherClosed:
      return errors.error_response(503, 'server is shutting down')
    except ClientDisconnect:  # nobody to answer; not a server error either
      return errors.error_response(400, 'client disconnected')
    except Exception as e:  # the model failed: log it, don't leak it
      return errors.internal_error('prediction', e)
    if log_writer is not None:
      log_writer.log(parsed.instances, parsed.keys, predictions)
    return response

  async def predict(request):
    if (not_found := unknown_model(request)) is not None:
      return not_found
    return await serve_predict(request)

  async def status(request):
    if (not_found := unknown_model(request)) is not None:
      return not_found
    return JSONResponse({'model_version_status': [{
        'version': config.model_version,
        'state': 'AVAILABLE' if state['ready'] else 'UNAVAILABLE',
        'status': {'error_code': 'OK', 'error_message': ''},
    }]})

  async def metadata(request):
    if (not_found := unknown_model(request)) is not None:
      return not_found
    return JSONResponse({
        'model_spec': {'name': config.model_name,
                       'version': config.model_version},
        'default_signature': sigs.DEFAULT_SIGNATURE,
        'signatures': signature_metadata(predictor.signatures),
    })

  async def healthz(request):
    del request
    return JSONResponse({'status': 'alive'})

  async def readyz(request):
    del request
    if not state['ready']:
      return JSONResponse({'status': 'not ready'}, status_code=503)
    return JSONResponse({'status': 'ready', 'model': config.model_name,
                         'model_version': config.model_version})

  @contextlib.asynccontextmanager
  async def lifespan(app):
    del app
    if batcher is not None:
      batcher.start()
    if log_writer is not None:
      log_writer.start()
    state['ready'] = True
    try:
      yield
    finally:
      state['ready'] = False
      if batcher is not None:
        await batcher.close()
      if log_writer is not None:
        await run_in_threadpool(log_writer.close)

  name = '/v1/models/{name:model}'
  routes = [
      Route(name + ':predict', predict, methods=['POST']),
      Route(name, status, methods=['GET']),
      Route(name + '/metadata', metadata, methods=['GET']),
      Route('/healthz', healthz, methods=['GET']),
      Route('/readyz', readyz, methods=['GET']),
  ]
  if config.predict_route:
    routes.append(Route(config.predict_route, serve_predict, methods=['POST']))
  if config.health_route:
    routes.append(Route(config.health_route, readyz, methods=['GET']))
  app = Starlette(
      routes=routes, lifespan=lifespan,
      exception_handlers={HTTPException: errors.http_exception,
                          Exception: errors.unhandled_exception})
  app.state.predictor = predictor
  app.state.batcher = batcher
  app.state.prediction_log = log_writer
  return app
