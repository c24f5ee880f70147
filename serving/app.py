"""The ASGI app: TF Serving / Vertex AI (v1) and Open Inference Protocol (v2)
REST routes over one Predictor.

Routes (NAME is the configured model name):
  /v1/models/NAME[:predict|/metadata]   TF Serving's REST API (v1_routes)
  /v2[/health/...|/models/NAME/...]     KServe v2 (v2_routes)
  GET /healthz                          liveness: the process answers
  GET /readyz                           readiness: model loaded, batcher running
  --predict_route, --health_route       Vertex AI's routes (AIP_PREDICT_ROUTE,
                                        AIP_HEALTH_ROUTE)

The model is loaded once, before the app exists (`create_app` takes the
process-wide Predictor), never per request. The model call runs in a worker
thread (or through the micro-batcher), so the event loop keeps serving other
clients while TensorFlow computes. Both protocols share one PredictionService
(serving.service): the same model, micro-batcher and prediction log.
"""
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.runtime import predictor as predictor_lib
from serving import errors
from serving.service import PredictionService
from serving.v1_routes import V1Routes
from serving.v2_routes import V2Routes


def health_routes(service):
  """/healthz, /readyz and Vertex AI's health route (answering as /readyz)."""
  config = service.config

  async def healthz(request):
    del request
    return JSONResponse({'status': 'alive'})

  async def readyz(request):
    del request
    if not service.ready:
      return JSONResponse({'status': 'not ready'}, status_code=503)
    return JSONResponse({'status': 'ready', 'model': config.model_name,
                         'model_version': config.model_version})

  routes = [Route('/healthz', healthz, methods=['GET']),
            Route('/readyz', readyz, methods=['GET'])]
  if config.health_route:
    routes.append(Route(config.health_route, readyz, methods=['GET']))
  return routes


def create_app(config, predictor=None):
  """Returns the Starlette app serving `predictor` (loaded now if None)."""
  if predictor is None:
    predictor = predictor_lib.load(config.model_dir)
  service = PredictionService(config, predictor)
  app = Starlette(
      routes=[*V1Routes(service).routes(), *V2Routes(service).routes(),
              *health_routes(service)],
      lifespan=service.lifespan,
      exception_handlers={HTTPException: errors.http_exception,
                          Exception: errors.unhandled_exception})
  app.state.service = service
  app.state.predictor = predictor
  app.state.batcher = service.batcher
  app.state.prediction_log = service.log_writer
  return app
