"""The Flex Template image, checked without docker: what templates/Dockerfile
builds from (pinned images, preinstalled dependencies, no start-up installs)
and what the build context leaves out (.dockerignore, and .gcloudignore for
`gcloud builds submit`)."""
import re
import subprocess

import pytest

from templates import generate
from templates import registry
from tests import build_context

ROOT = registry.REPO_ROOT
DOCKERFILE = (ROOT / generate.DOCKERFILE).read_text()
# Dockerfile instructions, comments dropped.
INSTRUCTIONS = [line for line in DOCKERFILE.splitlines()
                if line.strip() and not line.lstrip().startswith('#')]
LOCAL_STATE = ('.git/HEAD', '.venv', '.venv/bin/python', '.venv-standins',
               '.venv-standins/lib/python3.11/site-packages/duckdb/x.py',
               'data/models/sentiment/1/saved_model.pb',
               'out/predictions-00000-of-00001.jsonl', 'dist/x.whl',
               'build/lib/pipelines/launch.py', '.pytest_cache/v',
               'pipelines/__pycache__/launch.cpython-311.pyc',
               'resilient_serving.egg-info/PKG-INFO')


def _pin(package):
  text = (ROOT / 'requirements.txt').read_text()
  return re.search(rf'^{re.escape(package)}(\[[^]]*\])?==(\S+)$', text,
                   re.M).group(2)


def _arg(name):
  return re.search(rf'^ARG {name}=(\S+)$', DOCKERFILE, re.M).group(1)


def test_dockerfile_copies_the_beam_sdk_of_the_pinned_beam_version():
  assert _arg('BEAM_VERSION') == _pin('apache-beam')
  assert 'FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam_sdk' in (
      INSTRUCTIONS)
  assert 'COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam' in (
      INSTRUCTIONS)
  assert INSTRUCTIONS[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'


def test_the_launcher_base_image_is_pinned_not_latest():
  image = _arg('LAUNCHER_IMAGE')
  name, _, tag = image.rpartition(':')
  assert name.startswith(
      'gcr.io/dataflow-templates-base/python311-template-launcher-base')
  assert '@sha256:' in image or re.fullmatch(r'20\d{6}[-_]\S+', tag), image
  froms = [line.split()[1] for line in INSTRUCTIONS if line.startswith('FROM')]
  assert froms == ['apache/beam_python3.11_sdk:${BEAM_VERSION}',
                   '${LAUNCHER_IMAGE}']


def test_dependencies_are_preinstalled_and_nothing_installs_at_start_up():
  """As Google's pipeline_with_dependencies sample: the pinned set, then the
  project, installed at build time; no FLEX_TEMPLATE_PYTHON_SETUP_FILE (or
  _REQUIREMENTS_FILE), which would make the launcher stage the package and
  every worker install it again."""
  order = [i for i, line in enumerate(INSTRUCTIONS) if line in (
      'COPY requirements.txt constraints.txt ./',
      'RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt',
      'COPY . .',
      'RUN pip install --no-cache-dir --no-deps . && pip check')]
  assert len(order) == 4 and order == sorted(order)
  assert not [line for line in INSTRUCTIONS
              if 'SETUP_FILE' in line or 'REQUIREMENTS_FILE' in line]
  assert ('ENV FLEX_TEMPLATE_PYTHON_PY_FILE='
          '"${WORKDIR}/pipelines/${PIPELINE}.py"') in INSTRUCTIONS


def test_every_template_image_runs_its_pipeline_file():
  cloudbuild = (ROOT / generate.CLOUDBUILD).read_text()
  for template in registry.TEMPLATES:
    source = ROOT / 'pipelines' / f'{template.pipeline}.py'
    assert f'PIPELINE={template.pipeline},' in cloudbuild
    assert "if __name__ == '__main__':" in source.read_text()


def test_dockerfile_copies_files_that_exist():
  sources = []
  for line in INSTRUCTIONS:
    if line.startswith('COPY ') and '--from=' not in line:
      sources += line.split()[1:-1]
  assert 'requirements.txt' in sources and 'constraints.txt' in sources
  for source in sources:
    assert (ROOT / source).exists(), source


# --- the build context -------------------------------------------------------

@pytest.mark.parametrize('name', ['.dockerignore', '.gcloudignore'])
def test_build_context_leaves_out_local_state_and_keeps_the_project(name):
  patterns = build_context.patterns(name)
  # Anchored patterns mean the same to docker and to gcloud's gitignore
  # syntax (an unanchored 'data' would also drop a package's data/ folder
  # from gcloud's upload, not from docker's context).
  assert all(p.lstrip('!').startswith(('/', '**/')) for p in patterns), (
      patterns)
  for path in LOCAL_STATE:
    assert build_context.excluded(path, patterns), path
  tracked = subprocess.run(['git', 'ls-files'], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
  assert 'transforms/moderation/knowledge/person_aliases.tsv' in tracked
  assert [p for p in tracked if build_context.excluded(p, patterns)] == []
  # Whatever git ignores at the top of this checkout (a worktree's .venv
  # symlinks, the stand-ins' environment, data/, out/) stays out too.
  ignored = subprocess.run(
      ['git', 'ls-files', '--others', '--ignored', '--exclude-standard',
       '--directory'], cwd=ROOT, check=True, capture_output=True,
      text=True).stdout.split()
  top = {p.rstrip('/') for p in ignored if '/' not in p.rstrip('/')}
  assert [p for p in sorted(top)
          if not build_context.excluded(p, patterns)] == []


def test_the_pattern_reader_follows_docker_rules():
  assert build_context.excluded('.venv-standins/x', ['/.venv*'])
  assert not build_context.excluded('pipelines/.venv', ['/.venv*'])
  assert build_context.excluded('a/b/__pycache__/c.pyc', ['**/__pycache__'])
  assert not build_context.excluded('data/keep', ['/data', '!/data/keep'])
  assert not build_context.excluded('database.txt', ['/data'])
