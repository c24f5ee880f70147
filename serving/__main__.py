"""`python -m serving --model_dir DIR [flags]`: loads the model, then serves.

The model is loaded (and its signatures read) before the server binds its
port, so a bad --model_dir fails at once with one line and exit code 2, and
the first request never pays for loading. The run can be watched in its log
(INFO by default): the model and its signatures, the address and routes,
then a line of request counts per --stats_log_seconds and a summary at exit.
"""
import logging
import sys

from serving import config as serving_config

EXIT_USAGE = 2
LOG = logging.getLogger('serving')


def log_routes(config):
  base = f'http://{config.host}:{config.port}'
  LOG.info('listening on %s: POST %s/v1/models/%s:predict, POST '
           '%s/v2/models/%s/infer', base, base, config.model_name, base,
           config.model_name)
  if config.predict_route or config.health_route:
    LOG.info('Vertex AI routes: predict %s, health %s',
             config.predict_route or '-', config.health_route or '-')


def main(argv=None):
  config = serving_config.parse(argv)
  logging.basicConfig(level=config.log_level.upper(),
                      format='%(asctime)s %(levelname)s %(name)s: %(message)s')
  # Heavy imports after flag parsing, so --help and flag errors are instant.
  import uvicorn

  from models.runtime import predictor as predictor_lib
  from serving.app import create_app
  try:
    predictor = predictor_lib.load(config.model_dir)
  except Exception as e:  # pylint: disable=broad-except
    print(f'python -m serving: error: --model_dir {config.model_dir}: cannot '
          f'load the model: {type(e).__name__}: {str(e).splitlines()[0]}',
          file=sys.stderr)
    return EXIT_USAGE
  app = create_app(config, predictor)
  log_routes(config)
  uvicorn.run(
      app, host=config.host, port=config.port, log_level=config.log_level,
      access_log=config.access_log,
      limit_concurrency=config.max_concurrent_requests,
      timeout_graceful_shutdown=30)
  return 0


if __name__ == '__main__':
  sys.exit(main())
