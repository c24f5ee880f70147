"""The project as a Dataflow worker, a template image or a serving container
runs it: built into a wheel, installed into a virtual environment outside the
checkout, and every job started there by its console script, with the working
directory elsewhere and no PYTHONPATH.

The wheel is built the way Dataflow's --setup_file builds it (`python setup.py
sdist` in a copy of the checkout's files, then a wheel from that sdist), so a
file left out of the sdist or the wheel (package data, requirements.txt) fails
here, not on a worker.

Installing TensorFlow, Beam & co. into a fresh environment takes minutes, so
the environment reuses the dependencies of the interpreter running the tests:
a .pth line puts its site-packages on sys.path (after the environment's own)
without running that directory's .pth hooks, the checkout's editable install
among them. The project itself comes only from the wheel, and the first test
proves it.
"""
import dataclasses
import glob
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import sysconfig
import time

import httpx
import pytest

from common.records.prediction_log import log_row
from harness.pubsub import Topics
from harness.pubsub import pubsub_emulator  # noqa: F401  pylint: disable=unused-import
from harness.server_process import serving_process
from tests.tiny_two_phase import tiny_phase1  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ('common', 'pipelines', 'transforms', 'models', 'serving',
                    'templates')
# Files under the packages that are no package data: the image build's own,
# read by docker and Cloud Build from the checkout.
BUILD_FILES = ('templates/Dockerfile', 'templates/cloudbuild.yaml',
               'serving/Dockerfile')
REVIEWS = [('r1', 'a great film with wonderful acting'),
           ('r2', 'boring and awful, a waste of time'),
           ('r3', 'loved it, excellent fun'), ('r4', 'a dull mess')]
COMMENTS = [  # the alias table links both mentions to one person: one reject
    ('c1', 'u1', 'Has President Obama been to Paris?', '2026-11-01T10:00:00Z'),
    ('c2', 'u1', 'Barack Obama spoke today', '2026-11-01T11:00:00Z'),
    ('c3', 'u2', 'Nice weather', '2026-11-01T12:00:00Z')]


@dataclasses.dataclass(frozen=True)
class Command:
  """A command as a user types it in the installed environment ({name}s are
  filled from `Installed.paths`), and what it must leave behind: output
  file pattern -> line count (None: the file exists), and text that must
  appear in those files."""
  argv: str
  outputs: dict
  contains: tuple = ()


# One line per job: every console script of pyproject.toml runs here.
JOBS = {
    'batch_predict': Command(
        'rs-batch-predict --input {reviews} --feature_map reviews=text '
        '--model_dir {model} --output {out}/predictions',
        {'{out}/predictions-*': 4, '{out}/predictions_errors-*': 1}),
    'moderate': Command(
        'rs-moderate --input {comments} --output {out}/moderation',
        {'{out}/moderation-decisions-*': 3,
         '{out}/moderation-dead_letters-*': 1}, contains=('reject',)),
    'evaluate': Command(
        'rs-evaluate --predictions {prediction_log} --ground_truth {labels} '
        '--prediction_field positive_review_probability '
        '--output {out}/evaluation',
        {'{out}/evaluation/report.html': None,
         '{out}/evaluation/slices.jsonl': None},
        contains=('sentiment sentiment/1: per class',)),
    'two_phase': Command(
        'rs-two-phase --input {reviews} --phase1_model {phase1} '
        '--phase2_model_dir {model} --forward uncertain:0.2,0.8 '
        '--output {out}/two_phase/decisions',
        {'{out}/two_phase/*': 5}),
    # A streaming job needs Pub/Sub: its run from the wheel, against the
    # emulator, is test_rs_stream_predict_answers_pubsub_from_the_wheel.
    'stream_predict': Command('rs-stream-predict --help', {}),
    'schedule': Command(
        'python -m templates.schedule '
        '{site}/templates/schedules/nightly_batch_predict.json '
        '--date 2026-11-25 --out {out}/schedules',
        {'{out}/schedules/nightly-batch-predict.request.json': None}),
}


def _checkout_files():
  """The checkout's files as git sees them (tracked or not ignored)."""
  listed = subprocess.run(
      ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      cwd=ROOT, capture_output=True, check=True).stdout.decode().split('\0')
  return [f for f in listed if f and (ROOT / f).is_file()]


def _build_wheel(work):
  """sdist as Beam's stager builds it for --setup_file, then its wheel."""
  source = work / 'source'
  for name in _checkout_files():
    (source / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / name, source / name)
  subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '--dist-dir',
                  str(work / 'sdist')], cwd=source, check=True,
                 capture_output=True)
  [sdist] = (work / 'sdist').glob('*.tar.gz')
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                  '--no-build-isolation', '--wheel-dir', str(work / 'wheel'),
                  str(sdist)], cwd=work, check=True, capture_output=True)
  [wheel] = (work / 'wheel').glob('*.whl')
  return wheel


@dataclasses.dataclass
class Installed:
  venv: pathlib.Path
  site: pathlib.Path
  wheel: pathlib.Path
  env: dict
  paths: dict

  def run(self, argv, timeout=300):
    return subprocess.run(argv, cwd=self.paths['out'], env=self.env,
                          capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope='module')
def installed(tmp_path_factory, tiny_model_dir, tiny_phase1):  # noqa: F811
  work = tmp_path_factory.mktemp('wheel')
  wheel = _build_wheel(work)
  venv = work / 'venv'
  # Nothing of the checkout reaches the environment, not even while pip
  # installs: a PYTHONPATH to a tree holding an egg-info would make the
  # project look installed already.
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
  env.update(PATH=f'{venv / "bin"}{os.pathsep}{env.get("PATH", "")}',
             PYTHONNOUSERSITE='1', TF_CPP_MIN_LOG_LEVEL='2')
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)],
                 check=True, env=env, cwd=work)
  python = venv / 'bin' / 'python'
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(python),
                  'install', '-q', '--no-deps', str(wheel)], check=True,
                 env=env, cwd=work)
  site = pathlib.Path(subprocess.run(
      [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
       '["purelib"])'], capture_output=True, text=True, check=True, env=env,
      cwd=work).stdout.strip())
  (site / '_dependencies.pth').write_text(
      sysconfig.get_paths()['purelib'] + '\n')
  return Installed(venv, site, wheel, env, _inputs(
      work / 'data', tiny_model_dir, tiny_phase1[0], site))


def _write_lines(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(''.join(r if isinstance(r, str) else json.dumps(r) + '\n'
                          for r in rows))
  return str(path)


def _inputs(data, model, phase1, site):
  out = data.parent / 'out'
  out.mkdir()
  reviews = [{'key': k, 'text': t} for k, t in REVIEWS] + [{'key': 'r5'}]
  comments = [{'comment_id': c, 'commenter_id': u, 'text': t, 'timestamp': ts}
              for c, u, t, ts in COMMENTS] + ['not json\n']
  predictions = [log_row('sentiment', 'sentiment/1', k, {'reviews': t},
                         {'positive_review_probability': 0.9 if i % 2 == 0
                          else 0.2}, '2026-11-01T00:00:00+00:00')
                 for i, (k, t) in enumerate(REVIEWS)]
  labels = [{'key': k, 'groundtruth': 'positive' if i % 2 == 0
             else 'negative', 'labeled_at': '2026-11-02T00:00:00+00:00'}
            for i, (k, _) in enumerate(REVIEWS)]
  return {
      'reviews': _write_lines(data / 'reviews.jsonl', reviews),
      'comments': _write_lines(data / 'comments.jsonl', comments),
      'prediction_log': _write_lines(data / 'prediction_log.jsonl',
                                     predictions),
      'labels': _write_lines(data / 'labels.jsonl', labels),
      'model': str(model), 'phase1': str(phase1), 'site': str(site),
      'out': str(out),
  }


def test_the_project_is_imported_from_the_wheel_not_the_checkout(installed):
  probe = installed.run([
      'python', '-c',
      'import importlib, json, sys\n'
      f'names = {PROJECT_PACKAGES!r}\n'
      'import importlib.resources\n'
      'from transforms.moderation import alias_tables\n'
      'table = importlib.resources.files("transforms.moderation").joinpath('
      '"knowledge", alias_tables.BUILTIN_NAME)\n'
      'print(json.dumps({"files": [importlib.import_module(n).__file__ '
      'for n in names], "aliases": str(table), '
      '"people": len(alias_tables.AliasSource().people()), '
      '"path": sys.path}))'])
  assert probe.returncode == 0, probe.stderr
  found = json.loads(probe.stdout)
  for path in found['files'] + [found['aliases']]:
    path = pathlib.Path(path).resolve()
    assert path.is_relative_to(installed.site.resolve()), path
    assert not path.is_relative_to(ROOT), path
  assert found['people'] > 100
  assert str(ROOT) not in {str(pathlib.Path(p).resolve())
                           for p in found['path'] if p}


def test_every_data_file_of_the_packages_is_in_the_wheel(installed):
  import zipfile
  shipped = set(zipfile.ZipFile(installed.wheel).namelist())
  data_files = {f for f in _checkout_files()
                if f.split('/')[0] in PROJECT_PACKAGES
                and not f.endswith('.py') and f not in BUILD_FILES}
  assert 'transforms/moderation/knowledge/person_aliases.tsv' in data_files
  assert sorted(data_files - shipped) == []


def test_every_console_script_of_the_wheel_is_run_here(installed):
  import zipfile
  wheel = zipfile.ZipFile(installed.wheel)
  [entry_points] = [n for n in wheel.namelist()
                    if n.endswith('.dist-info/entry_points.txt')]
  scripts = dict(tuple(part.strip() for part in line.split('='))
                 for line in wheel.read(entry_points).decode().splitlines()
                 if '=' in line)
  run_here = {c.argv.split()[0] for c in JOBS.values()} | {
      'resilient-serving'}
  assert set(scripts) <= run_here
  # Every job has its command, and its command is run above.
  from templates import registry
  for template in registry.TEMPLATES:
    name = template.pipeline
    assert scripts[f'rs-{name.replace("_", "-")}'] == f'{template.module}:main'
    assert name in JOBS


@pytest.mark.parametrize('job', sorted(JOBS))
def test_job_runs_from_the_installed_wheel(installed, job):
  command = JOBS[job]
  done = installed.run(command.argv.format(**installed.paths).split())
  assert done.returncode == 0, done.stdout + done.stderr
  texts = []
  for pattern, lines in command.outputs.items():
    files = glob.glob(pattern.format(**installed.paths))
    assert files, (pattern, done.stdout + done.stderr)
    texts += [pathlib.Path(f).read_text() for f in files]
    if lines is not None:
      assert sum(len(t.splitlines()) for t in texts[-len(files):]) == lines, (
          pattern, done.stdout)
  for text in command.contains:
    assert any(text in t for t in texts), (text, texts)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_python_m_serving_serves_from_the_installed_wheel(installed):
  port = _free_port()
  assert installed.run(['resilient-serving', '--help'], 60).returncode == 0
  with serving_process(
      ['python', '-m', 'serving', '--model_dir', installed.paths['model'],
       '--port', str(port), '--log_level', 'warning'], port,
      cwd=installed.paths['out'], env=installed.env) as base:
    response = httpx.post(f'{base}/v1/models/tiny:predict', json={
        'instances': [{'reviews': text} for _, text in REVIEWS]})
  assert response.status_code == 200, response.text
  assert len(response.json()['predictions']) == len(REVIEWS)


def test_rs_stream_predict_answers_pubsub_from_the_wheel(installed,
                                                          pubsub_emulator):  # noqa: F811
  topics = Topics('requests', 'predictions', 'dead-letters', prefix='wheel')
  job = subprocess.Popen(
      ['rs-stream-predict', '--input_subscription', topics.sub['requests'],
       '--output_topic', topics.topic['predictions'],
       '--dead_letter_topic', topics.topic['dead-letters'],
       '--model_dir', installed.paths['model'], '--feature_map',
       'reviews=text', '--batch_size', '4', '--max_batch_wait_ms', '200'],
      cwd=installed.paths['out'],
      env=dict(installed.env, PUBSUB_EMULATOR_HOST=pubsub_emulator),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    topics.publish('requests', [
        json.dumps({'key': k, 'text': text}).encode() for k, text in REVIEWS
    ] + [b'not json'])
    deadline = time.monotonic() + 180
    predictions = topics.pull('predictions', len(REVIEWS), deadline)
    dead = topics.pull('dead-letters', 1, deadline)
  finally:
    job.kill()
    log = job.communicate(timeout=60)[0]
  assert sorted(p['key'] for p in predictions) == sorted(
      k for k, _ in REVIEWS), log[-3000:]
  assert [(d['reason'], d['raw']) for d in dead] == [
      ('unparseable', 'not json')], log[-3000:]
