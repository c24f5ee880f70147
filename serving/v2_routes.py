"""The Open Inference Protocol (KServe v2) REST API, beside TF Serving's v1.

  GET  /v2                                  server metadata
  GET  /v2/health/live                      {"live": true}
  GET  /v2/health/ready                     {"ready": ...}; 503 until ready
  GET  /v2/models/NAME[/versions/V]         model metadata (datatypes, shapes)
  GET  /v2/models/NAME[/versions/V]/ready   {"name", "ready"}; 503 until ready
  POST /v2/models/NAME[/versions/V]/infer   typed tensors in and out

V is the last part of the model version ('1' for 'sentiment/1'). The model,
the micro-batcher, the prediction log and the error shape ({"error": ...})
are v1's (serving.service); serving.v2_tensors translates the tensors.
Metadata describes serving_default unless `?signature_name=` names another;
an inference request picks its signature with `parameters.signature_name`.
"""
import importlib.metadata

from starlette.responses import JSONResponse
from starlette.routing import Route

from serving import request as req
from serving import v2_tensors

PLATFORM = 'tensorflow_savedmodel'
SERVER_NAME = 'resilient-serving'


def _server_version():
  try:
    return importlib.metadata.version(SERVER_NAME)
  except importlib.metadata.PackageNotFoundError:  # a checkout, not installed
    return 'unknown'


def _readiness(body, ready):
  return JSONResponse(body, status_code=200 if ready else 503)


class V2Routes:
  """The v2 handlers over one PredictionService."""

  def __init__(self, service):
    self.service = service
    self.config = service.config

  def routes(self):
    routes = [
        Route('/v2', self.server_metadata, methods=['GET']),
        Route('/v2/health/live', self.live, methods=['GET']),
        Route('/v2/health/ready', self.ready, methods=['GET']),
    ]
    for model in ('/v2/models/{name}', '/v2/models/{name}/versions/{version}'):
      routes += [
          Route(model, self.model_metadata, methods=['GET']),
          Route(model + '/ready', self.model_ready, methods=['GET']),
          Route(model + '/infer', self.infer, methods=['POST']),
      ]
    return routes

  def _check_model(self, request):
    self.service.check_model(request.path_params['name'],
                             request.path_params.get('version'))

  async def server_metadata(self, request):
    del request
    return JSONResponse({'name': SERVER_NAME, 'version': _server_version(),
                         'extensions': []})

  async def live(self, request):
    del request
    return JSONResponse({'live': True})

  async def ready(self, request):
    del request
    return _readiness({'ready': self.service.ready}, self.service.ready)

  async def model_ready(self, request):
    async def work():
      self._check_model(request)
      return _readiness({'name': self.config.model_name,
                         'ready': self.service.ready}, self.service.ready)
    return await self.service.respond(work, 'model readiness')

  async def model_metadata(self, request):
    async def work():
      self._check_model(request)
      predictor = self.service.predictor
      signature = req.signature_of(
          predictor, request.query_params.get('signature_name'))
      return {
          'name': self.config.model_name,
          'versions': [self.service.version],
          'platform': PLATFORM,
          'inputs': v2_tensors.tensor_metadata(signature.inputs),
          'outputs': v2_tensors.tensor_metadata(signature.outputs),
          'parameters': {'signature_name': signature.name,
                         'signatures': ','.join(sorted(predictor.signatures))},
      }
    return await self.service.respond(work, 'model metadata')

  async def infer(self, request):
    async def work():
      self._check_model(request)
      body = await req.read_json(request, self.config.max_body_bytes)
      infer = v2_tensors.parse_infer(
          body, self.service.predictor, self.config.max_instances,
          self.config.max_text_bytes)
      predictions = await self.service.predict(infer.predict)
      return v2_tensors.infer_response(
          infer, predictions, self.config.model_name, self.service.version)
    return await self.service.respond(work)
