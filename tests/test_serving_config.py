"""Flags of `python -m serving`: defaults, derived names, early failures."""
import pytest

from serving import config as serving_config


def test_defaults_and_derived_model_name_and_version():
  config = serving_config.parse(['--model_dir', 'data/models/sentiment/1'])
  assert config.model_name == 'sentiment'
  assert config.model_version == 'sentiment/1'
  assert (config.host, config.port) == ('127.0.0.1', 8080)
  assert not config.micro_batching
  assert config.prediction_log_dir is None


def test_vertex_ai_environment_sets_port_and_routes(monkeypatch):
  monkeypatch.setenv('AIP_HTTP_PORT', '9000')
  monkeypatch.setenv('AIP_PREDICT_ROUTE', '/predict')
  monkeypatch.setenv('AIP_HEALTH_ROUTE', '/health')
  config = serving_config.parse(['--model_dir', 'gs://b/m'])
  assert (config.port, config.predict_route, config.health_route) == (
      9000, '/predict', '/health')
  assert config.model_name == 'm'
  # Vertex AI connects from outside the container.
  assert config.host == '0.0.0.0'
  assert serving_config.parse(['--model_dir', 'm', '--host', '::1']).host == (
      '::1')


def test_vertex_ai_storage_uri_is_the_default_model_dir(monkeypatch):
  monkeypatch.setenv('AIP_STORAGE_URI', 'gs://vertex-bucket/model/sentiment/3')
  config = serving_config.parse([])
  assert config.model_dir == 'gs://vertex-bucket/model/sentiment/3'
  assert (config.model_name, config.model_version) == (
      'sentiment', 'sentiment/3')
  assert config.host == '127.0.0.1'  # no AIP_HTTP_PORT: not in Vertex
  assert serving_config.parse(['--model_dir', 'm/1']).model_dir == 'm/1'


@pytest.mark.parametrize('flags, message', [
    ([], 'the following arguments are required: --model_dir'),
    (['--port', '70000'], 'argument --port: must be 0..65535'),
    (['--micro_batch_size', '-1'], 'argument --micro_batch_size'),
    (['--micro_batch_timeout_ms', '0'], 'argument --micro_batch_timeout_ms'),
    (['--prediction_log_rate', '1.5'], 'argument --prediction_log_rate'),
    (['--max_instances', '0'], 'argument --max_instances'),
    (['--model_name', 'a:b'], 'argument --model_name'),
    (['--predict_route', 'predict'], 'argument --predict_route'),
    (['--max_text_bytes', '0'], 'argument --max_text_bytes'),
    (['--stats_log_seconds', '-1'], 'argument --stats_log_seconds'),
])
def test_bad_flags_fail_early_with_one_line(flags, message, capsys):
  argv = flags if not flags else ['--model_dir', 'm/1', *flags]
  with pytest.raises(SystemExit) as exit_info:
    serving_config.parse(argv)
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err
