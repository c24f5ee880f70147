"""Scheduled launches: rendered from one config, valid against the Dataflow
v1b3 schema, accepted by the pipeline, date-stamped per run."""
import json
import shlex

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import launch
from templates import dataflow_api
from templates import registry
from templates import schedule

CONFIGS = sorted((registry.TEMPLATES_DIR / 'schedules').glob('*.json'))


@pytest.fixture(params=CONFIGS, ids=[c.stem for c in CONFIGS])
def rendered(request, tmp_path):
  files = schedule.render(request.param, tmp_path, '2026-11-25')
  config = schedule.load(request.param)
  by_kind = {p.name.split('.', 1)[1]: text for p, text in files.items()}
  return config, by_kind


def test_there_are_nightly_and_daily_schedules():
  assert {'nightly_batch_predict', 'daily_evaluate'} <= {c.stem for c in CONFIGS}


def test_launch_request_is_valid_against_the_discovery_schema(rendered):
  config, files = rendered
  request = json.loads(files['request.json'])
  assert dataflow_api.errors(request, 'LaunchFlexTemplateRequest') == []
  assert request['launchParameter']['jobName'] == f'{config["name"]}-2026-11-25'
  assert schedule.JOB_NAME.match(request['launchParameter']['jobName'])
  assert '{' not in files['request.json'].replace('{\n', '').replace('{}', '')


def test_every_launch_parameter_is_accepted_by_the_pipeline(rendered):
  config, files = rendered
  params = json.loads(files['request.json'])['launchParameter']['parameters']
  parser = registry.by_name(config['template']).parser()
  args, beam_args = parser.parse_known_args(
      [f'--{k}={v}' for k, v in params.items()])
  for name, value in params.items():
    if hasattr(args, name):
      assert str(getattr(args, name)) in (value, str([value]))
    else:  # a Beam option, e.g. sdk_container_image: Beam must know it
      assert f'--{name}={value}' in beam_args
      assert PipelineOptions(beam_args).get_all_options()[name] == value


def test_workflow_posts_the_same_request_to_flex_templates_launch(rendered):
  config, files = rendered
  program = yaml.safe_load(files['workflow.yaml'])
  steps = {list(s)[0]: s[list(s)[0]] for s in program['main']['steps']}
  assigned = {list(a)[0]: a[list(a)[0]] for a in steps['init']['assign']}
  assert assigned['request'] == schedule.launch_request(config)
  assert '{run_date}' in assigned['request']['launchParameter']['jobName']
  post = steps['launch_template']['try']
  assert post['call'] == 'http.post'
  assert post['args']['url'] == dataflow_api.LAUNCH_URL.format(
      project=config['project'], region=config['region'])
  assert post['args']['auth'] == {'type': 'OAuth2'}
  assert post['args']['body'] == {'launchParameter': '${launch}'}


def test_scheduler_command_runs_the_workflow_with_an_oauth_account(rendered):
  config, files = rendered
  [create] = [shlex.split(line) for line in files['commands.sh'].splitlines()
              if line.startswith('gcloud scheduler jobs create http')]
  flags = dict(a[2:].split('=', 1) for a in create if a.startswith('--'))
  assert create[:5] == ['gcloud', 'scheduler', 'jobs', 'create', 'http']
  assert create[5] == config['name']
  assert flags['schedule'] == config['schedule']
  assert flags['http-method'] == 'POST'
  assert flags['oauth-service-account-email'] == config[
      'scheduler_service_account']
  assert flags['uri'].endswith(
      f'/locations/{config["region"]}/workflows/{config["name"]}/executions')
  assert any(line.startswith('gcloud workflows deploy')
             for line in files['commands.sh'].splitlines())


def test_each_run_date_gets_its_own_job_name_and_paths():
  config = schedule.load(CONFIGS[0])
  one = schedule.launch_request(config, '2026-11-25')['launchParameter']
  two = schedule.launch_request(config, '2026-11-26')['launchParameter']
  again = schedule.launch_request(config, '2026-11-25')['launchParameter']
  assert one['jobName'] != two['jobName']
  assert one == again  # a retry of the same run reuses the name: no 2nd job


def _write(tmp_path, change):
  config = json.loads(
      (registry.TEMPLATES_DIR / 'schedules' / 'nightly_batch_predict.json')
      .read_text())
  change(config)
  path = tmp_path / 'config.json'
  path.write_text(json.dumps(config))
  return path


@pytest.mark.parametrize('change, problem', [
    (lambda c: c['parameters'].update(output_fromat='avro'),
     'output_fromat: not a parameter'),
    (lambda c: c['parameters'].pop('model_dir'), 'model_dir: required'),
    (lambda c: c['parameters'].update(output_format='xml'), 'does not match'),
    (lambda c: c['parameters'].update(batch_size='lots'), 'does not match'),
    (lambda c: c['environment'].update(maxWorkers='ten'),
     'maxWorkers: expected an integer'),
    (lambda c: c['environment'].update(workerMachine='n2'), 'unknown field'),
    (lambda c: c.update(name='Nightly_Run'), 'lowercase'),
    (lambda c: c.pop('schedule'), r"missing \['schedule'\]"),
])
def test_bad_configs_fail_before_anything_is_written(tmp_path, change, problem):
  path = _write(tmp_path, change)
  with pytest.raises(launch.UsageError, match=problem):
    schedule.render(path, tmp_path / 'out', '2026-11-25')
  assert not (tmp_path / 'out').exists()
