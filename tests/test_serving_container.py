"""What serving/Dockerfile says, checked without a Docker daemon.

The image must be reproducible (a pinned base of the tested Python,
dependencies from requirements.txt with constraints.txt), run the installed
package rather than a checkout, and start with no flags on Vertex AI (which
passes AIP_* variables; tests/test_serving_main.py runs the server with
them). A build is not possible here, so these tests read the instructions.
"""
import json
import pathlib
import re
import sys
import tomllib

from serving import config as serving_config
from tests import build_context

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / 'serving' / 'Dockerfile'


def instructions():
  """[(INSTRUCTION, arguments)], continuation lines joined, comments out."""
  lines, current = [], ''
  for line in DOCKERFILE.read_text().splitlines():
    if line.lstrip().startswith('#') or not line.strip():
      continue
    current += line.rstrip()
    if current.endswith('\\'):
      current = current[:-1] + ' '
      continue
    lines.append(current)
    current = ''
  return [tuple(re.split(r'\s+', line.strip(), maxsplit=1)) for line in lines]


def args_of(name):
  return [args for instruction, args in instructions() if instruction == name]


def test_base_image_is_the_tested_python_pinned():
  image = dict(a.split('=', 1) for a in args_of('ARG'))['PYTHON_IMAGE']
  major, minor = sys.version_info[:2]
  # A patch release and a Debian release (or a digest): never a moving tag.
  assert re.fullmatch(rf'python:{major}\.{minor}\.\d+-slim-[a-z]+'
                      r'(@sha256:[0-9a-f]{64})?', image), image
  assert all(args.split()[0] == '${PYTHON_IMAGE}' for args in args_of('FROM'))
  assert len(args_of('FROM')) == 2  # a wheel stage, then the image


def test_pinned_dependencies_are_installed_before_the_project():
  steps = [f'{i} {a}' for i, a in instructions()]
  deps = next(n for n, s in enumerate(steps)
              if 'pip install' in s and '-r /tmp/deps/requirements.txt' in s)
  assert '-c /tmp/deps/constraints.txt' in steps[deps]
  assert steps[deps - 1] == ('COPY requirements.txt constraints.txt '
                             '/tmp/deps/')
  project = next(n for n, s in enumerate(steps)
                 if 'pip install --no-cache-dir --no-deps /tmp/wheels' in s)
  assert deps < project and '&& pip check' in steps[project]
  assert any('pip wheel' in s and '--no-deps' in s and s.endswith(' .')
             for s in steps[:deps])
  for source in ('requirements.txt', 'constraints.txt'):
    assert (ROOT / source).is_file()


def test_runs_the_installed_console_script_without_flags_vertex_sets():
  entrypoint = json.loads(args_of('ENTRYPOINT')[-1])
  assert entrypoint == ['resilient-serving', '--host', '0.0.0.0']
  scripts = tomllib.loads((ROOT / 'pyproject.toml').read_text())[
      'project']['scripts']
  assert scripts['resilient-serving'] == 'serving.__main__:main'
  # --model_dir and --port come from AIP_STORAGE_URI and AIP_HTTP_PORT.
  assert not args_of('CMD')
  assert args_of('EXPOSE') == [str(serving_config.DEFAULT_PORT)]
  # The last stage runs from a directory without the project's source.
  assert args_of('WORKDIR')[-1] == '/home/serving'
  assert args_of('USER') == ['serving']


def test_build_context_leaves_out_local_state():
  rules = build_context.patterns('.dockerignore')
  for path in ('.git', '.venv', '.venv-standins', 'data', 'out'):
    assert build_context.excluded(path, rules), path
