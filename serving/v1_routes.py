"""TensorFlow Serving's REST API (v1), which Vertex AI's predict protocol is.

  POST /v1/models/NAME:predict    {"instances": [...], "signature_name"?}
                                  -> {"predictions": [...]}
  GET  /v1/models/NAME            model status (TF Serving's shape)
  GET  /v1/models/NAME/metadata   the model's signatures, inputs and outputs

plus, for Vertex AI custom containers, `--predict_route` serving :predict
for the configured model (Vertex's `parameters` field is accepted and
ignored).
"""
from starlette.convertors import Convertor
from starlette.convertors import register_url_convertor
from starlette.routing import Route

from models.runtime import signatures as sigs
from serving import request as req


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


class V1Routes:
  """The v1 handlers over one PredictionService."""

  def __init__(self, service):
    self.service = service
    self.config = service.config

  def routes(self):
    name = '/v1/models/{name:model}'
    routes = [
        Route(name + ':predict', self.predict, methods=['POST']),
        Route(name, self.status, methods=['GET']),
        Route(name + '/metadata', self.metadata, methods=['GET']),
    ]
    if self.config.predict_route:
      routes.append(Route(self.config.predict_route, self.vertex_predict,
                          methods=['POST']))
    return routes

  async def predict(self, request):
    async def work():
      self.service.check_model(request.path_params['name'])
      return await self._predict(request)
    return await self.service.respond(work)

  async def vertex_predict(self, request):
    return await self.service.respond(lambda: self._predict(request))

  async def _predict(self, request):
    body = await req.read_json(request, self.config.max_body_bytes)
    parsed = req.parse_predict(body, self.service.predictor,
                               self.config.max_instances,
                               self.config.max_text_bytes)
    return {'predictions': await self.service.predict(parsed)}

  async def status(self, request):
    async def work():
      self.service.check_model(request.path_params['name'])
      return {'model_version_status': [{
          'version': self.config.model_version,
          'state': 'AVAILABLE' if self.service.ready else 'UNAVAILABLE',
          'status': {'error_code': 'OK', 'error_message': ''},
      }]}
    return await self.service.respond(work, 'model status')

  async def metadata(self, request):
    async def work():
      self.service.check_model(request.path_params['name'])
      return {
          'model_spec': {'name': self.config.model_name,
                         'version': self.config.model_version},
          'default_signature': sigs.DEFAULT_SIGNATURE,
          'signatures': signature_metadata(self.service.predictor.signatures),
      }
    return await self.service.respond(work, 'model metadata')
