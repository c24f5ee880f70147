"""Renders a scheduled Flex Template launch from one config file.

    python -m templates.schedule templates/schedules/nightly_batch_predict.json \\
        [--date 2026-11-25] [--out build/schedules]

writes, under --out:
  NAME.request.json   the LaunchFlexTemplateRequest body for one run date
                      (for a manual launch with curl, and what the tests check)
  NAME.workflow.yaml  a Cloud Workflows program that stamps the run date into
                      the job name and parameters, then POSTs the same body to
                      the Dataflow flexTemplates:launch endpoint
  NAME.commands.sh    the gcloud commands that deploy the workflow and create
                      the Cloud Scheduler job that runs it on the cron schedule

Why a workflow between the scheduler and Dataflow: a Cloud Scheduler HTTP
job sends the same body every time, and Dataflow refuses to launch a job
whose name belongs to a running job, so a fixed body cannot carry a
date-stamped job name or date-partitioned paths. The workflow adds the date
at run time (`{run_date}`, UTC, YYYY-MM-DD). Retries reuse the execution's
name: if a launch went through but its answer was lost, the retry is refused
(409, job name in use) instead of starting the job twice.

Config values may use {project}, {region} and {bucket} (filled in from the
config) and {run_date} (filled in per run). Everything is checked before
anything is written: the body against the Dataflow v1b3 schema, every
parameter against the template's metadata.json (or Beam's own options), the
values against the metadata's regexes.
"""
import argparse
import datetime
import json
import pathlib
import re
import shlex
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import launch
from templates import dataflow_api
from templates import registry

RUN_DATE = '{run_date}'
WORKFLOW_EXECUTIONS_URL = (
    'https://workflowexecutions.googleapis.com/v1/projects/{project}/'
    'locations/{region}/workflows/{name}/executions')
CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform'
JOB_NAME = re.compile(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')
REQUIRED = ('name', 'template', 'schedule', 'project', 'region', 'bucket',
            'template_file', 'workflow_service_account',
            'scheduler_service_account', 'parameters')
OPTIONAL = ('description', 'time_zone', 'environment')


def _fill(value, config):
  """Fills {project}/{region}/{bucket} in every string of `value`."""
  if isinstance(value, str):
    for key in ('project', 'region', 'bucket'):
      value = value.replace('{' + key + '}', str(config[key]))
    return value
  if isinstance(value, dict):
    return {k: _fill(v, config) for k, v in value.items()}
  if isinstance(value, list):
    return [_fill(v, config) for v in value]
  return value


def load(path):
  """Reads and checks a schedule config; raises launch.UsageError."""
  try:
    config = json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError) as e:
    raise launch.UsageError('config', f'cannot read {path}: {e}')
  missing = [k for k in REQUIRED if k not in config]
  unknown = sorted(set(config) - set(REQUIRED) - set(OPTIONAL))
  if missing or unknown:
    raise launch.UsageError(
        'config', f'{path}: missing {missing}, unknown {unknown}')
  if not JOB_NAME.match(config['name']):
    raise launch.UsageError('config', f'name {config["name"]!r}: lowercase '
                            'letters, digits and dashes (a job name prefix)')
  return _fill(config, config)


def launch_request(config, run_date=RUN_DATE):
  """The LaunchFlexTemplateRequest body; {run_date} filled when given."""
  stamp = lambda text: text.replace(RUN_DATE, run_date)  # noqa: E731
  parameter = {
      'jobName': stamp(f'{config["name"]}-{RUN_DATE}'),
      'containerSpecGcsPath': config['template_file'],
      'parameters': {k: stamp(str(v)) for k, v in config['parameters'].items()},
  }
  if config.get('environment'):
    parameter['environment'] = config['environment']
  return {'launchParameter': parameter}


def check(config, request):
  """Every problem with a rendered request ([] when it would launch)."""
  problems = dataflow_api.errors(request, 'LaunchFlexTemplateRequest')
  template = registry.by_name(config['template'])
  meta = json.loads((template.folder / 'metadata.json').read_text())
  declared = {p['name']: p for p in meta['parameters']}
  beam_options = set(PipelineOptions([]).get_all_options())
  given = request['launchParameter']['parameters']
  for name, value in given.items():
    if name in declared:
      for regex in declared[name].get('regexes', []):
        if not re.fullmatch(regex, value):
          problems.append(f'parameters.{name}: {value!r} does not match '
                          f'{regex}')
    elif name not in beam_options:
      problems.append(f'parameters.{name}: not a parameter of the '
                      f'{template.pipeline} template nor a Beam option')
  problems += [f'parameters.{n}: required by the template'
               for n, p in declared.items()
               if not p.get('isOptional') and n not in given]
  job_name = request['launchParameter']['jobName']
  if RUN_DATE not in job_name and not JOB_NAME.match(job_name):
    problems.append(f'jobName {job_name!r} is not a valid Dataflow job name')
  return problems


def workflow(config):
  """Cloud Workflows source: stamp the date, POST the launch request."""
  url = dataflow_api.LAUNCH_URL.format(
      project=config['project'], region=config['region'])
  body = json.dumps(launch_request(config), sort_keys=True)
  return f'''# Generated by `python -m templates.schedule`; launches {config["template"]}.
# Stamps {RUN_DATE} (UTC date of the run) into the job name and parameters,
# then POSTs the LaunchFlexTemplateRequest with this workflow's service account.
main:
  params: [event]
  steps:
    - init:
        assign:
          - run_date: ${{text.substring(time.format(sys.now()), 0, 10)}}
          - request: {body}
          - launch: ${{request.launchParameter}}
          - launch.jobName: ${{text.replace_all(launch.jobName, "{RUN_DATE}", run_date)}}
    - stamp_parameters:
        for:
          value: name
          in: ${{keys(launch.parameters)}}
          steps:
            - stamp:
                assign:
                  - launch.parameters[name]: ${{text.replace_all(launch.parameters[name], "{RUN_DATE}", run_date)}}
    - launch_template:
        try:
          call: http.post
          args:
            url: {url}
            auth:
              type: OAuth2
            body:
              launchParameter: ${{launch}}
          result: response
        retry: ${{http.default_retry}}
    - done:
        return: ${{response.body.job}}
'''


def commands(config, workflow_file):
  """gcloud commands: deploy the workflow, schedule its executions."""
  name, project, region = config['name'], config['project'], config['region']
  q = shlex.quote
  uri = WORKFLOW_EXECUTIONS_URL.format(project=project, region=region,
                                       name=name)
  return '\n'.join([
      '#!/usr/bin/env bash',
      f'# Generated by `python -m templates.schedule`: {name}.',
      'set -euo pipefail',
      f'gcloud workflows deploy {q(name)} --project={q(project)} '
      f'--location={q(region)} --source={q(str(workflow_file))} '
      f'--service-account={q(config["workflow_service_account"])}',
      f'gcloud scheduler jobs create http {q(name)} --project={q(project)} '
      f'--location={q(region)} --schedule={q(config["schedule"])} '
      f'--time-zone={q(config.get("time_zone", "Etc/UTC"))} '
      f'--uri={q(uri)} --http-method=POST --message-body={q("{}")} '
      f'--oauth-service-account-email={q(config["scheduler_service_account"])} '
      f'--oauth-token-scope={CLOUD_PLATFORM_SCOPE} '
      '--attempt-deadline=180s --max-retry-attempts=3 --min-backoff=60s',
      '',
      '# Without the workflow, the scheduler can POST the launch request',
      '# itself, but its body is fixed: the same job name and paths every',
      '# run (a second launch while a job of that name runs gets 409). To',
      '# accept that, drop {run_date} from the config and use instead:',
      f'#   gcloud scheduler jobs create http {q(name)} --project={q(project)} '
      f'--location={q(region)} --schedule={q(config["schedule"])} '
      f'--uri={dataflow_api.LAUNCH_URL.format(project=project, region=region)} '
      '--http-method=POST --headers=Content-Type=application/json '
      f'--message-body-from-file={q(name + ".request.json")} '
      f'--oauth-service-account-email={q(config["workflow_service_account"])} '
      f'--oauth-token-scope={CLOUD_PLATFORM_SCOPE}',
      '',
  ])


def render(config_path, out_dir, run_date):
  config = load(config_path)
  request = launch_request(config, run_date)
  problems = check(config, request)
  if problems:
    raise launch.UsageError('config', f'{config_path}: ' + '; '.join(problems))
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  name = config['name']
  files = {
      out / f'{name}.request.json': json.dumps(request, indent=2) + '\n',
      out / f'{name}.workflow.yaml': workflow(config),
  }
  files[out / f'{name}.commands.sh'] = commands(
      config, out / f'{name}.workflow.yaml')
  for path, text in files.items():
    path.write_text(text)
  return files


def run(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m templates.schedule',
      description='Renders a scheduled Flex Template launch from a config.')
  parser.add_argument('config', help='Schedule config (JSON), e.g. '
                      'templates/schedules/nightly_batch_predict.json.')
  parser.add_argument(
      '--date', default=datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%d'),
      help='Run date for NAME.request.json (default: today, UTC).')
  parser.add_argument('--out', default='build/schedules',
                      help='Folder for the rendered files.')
  args = parser.parse_args(argv)
  for path in render(args.config, args.out, args.date):
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(launch.main(run))
