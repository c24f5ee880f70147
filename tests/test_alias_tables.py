"""Alias tables: the built-in one from the installed package, the user's TSV
or JSONL, local or gs://, each bad row reported once, and how a table
travels to the workers."""
import gzip
import json
import os
import pickle
import subprocess
import sys

import pytest
from apache_beam.internal import pickler

from common.config_error import ConfigError
from harness.gcs import gcs_emulator  # noqa: F401  pylint: disable=unused-import
from pipelines import launch
from pipelines import moderate
from transforms.moderation import alias_tables
from transforms.moderation.alias_tables import AliasSource
from transforms.moderation.entities import ExtractEntities
from transforms.moderation.entities import LocalEntityFn

W = 'https://en.wikipedia.org/wiki/'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TSV = ('# a comment\n'
       'wikipedia_title\taliases\tpriority\tmid\n'
       'Barack_Obama\tObama|Barack H. Obama\t\t/m/02mjmr\n'
       'Bill_Clinton\t\t1\n'
       'Hillary_Clinton\tHillary\n')
JSONL = (json.dumps({'wikipedia_title': 'Barack_Obama',
                     'aliases': ['Obama'], 'mid': '/m/02mjmr'}) + '\n' +
         json.dumps({'wikipedia_title': 'Bill_Clinton', 'priority': 1}) + '\n'
         '\n' + json.dumps({'wikipedia_title': 'Hillary_Clinton'}) + '\n')


def _check(table):
  assert table.link('President Obama') == W + 'Barack_Obama'
  assert table.link('Clinton') == W + 'Bill_Clinton'      # priority 1
  assert table.mids == {'/m/02mjmr': W + 'Barack_Obama'}


@pytest.mark.parametrize('name,text', [
    ('people.tsv', TSV), ('people.jsonl', JSONL),
    ('people.tsv', TSV.replace('wikipedia_title\taliases\tpriority\tmid\n',
                               ''))])  # no header: the default columns
def test_tsv_and_jsonl_tables(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text, encoding='utf-8')
  _check(AliasSource(str(path)).table())


def test_compressed_tables_are_read_by_their_suffix(tmp_path):
  path = tmp_path / 'people.jsonl.gz'
  path.write_bytes(gzip.compress(JSONL.encode()))
  _check(AliasSource(str(path)).table())


def test_a_local_table_travels_with_the_job(tmp_path):
  # The worker has no access to the submitting machine's files: the text
  # is read at construction and pickled with the DoFn.
  path = tmp_path / 'people.tsv'
  path.write_text(TSV, encoding='utf-8')
  fn = pickler.loads(pickler.dumps(LocalEntityFn(alias_table=str(path))))
  path.unlink()
  _check(fn._source.table())  # pylint: disable=protected-access


def test_a_gs_table_is_read_with_beams_file_systems(gcs_emulator):
  gcs_emulator.client().bucket(gcs_emulator.bucket).blob(
      'tables/people.jsonl').upload_from_string(JSONL)
  source = AliasSource(gcs_emulator.url('tables/people.jsonl'))
  assert source.key == ('remote', gcs_emulator.url('tables/people.jsonl'))
  _check(pickle.loads(pickle.dumps(source)).table())
  with pytest.raises(ConfigError, match='cannot read'):
    AliasSource(gcs_emulator.url('tables/missing.tsv'))


def test_every_bad_row_is_reported_once(tmp_path):
  path = tmp_path / 'bad.tsv'
  path.write_text(
      'wikipedia_title\taliases\tpriority\tmid\ttype\n'
      'Emmanuel_Macron\tMacron\n'              # line 2: fine
      'Barack Obama\tObama\n'                  # line 3: a space
      'Angela_Merkel\tMerkel\tfirst\n'         # line 4: priority
      'Olaf_Scholz\t\t\tm0123\n'               # line 5: mid
      'Emmanuel_Macron\n'                      # line 6: a duplicate
      'Joe_Biden\t!!!\n'                       # line 7: an empty alias
      'Paris\tParis\t\t\tCITY\n'               # line 8: a type
      'A\tb\t1\t/m/01\tPERSON\textra\n',       # line 9: too many cells
      encoding='utf-8')
  with pytest.raises(ConfigError) as e:
    AliasSource(str(path))
  message = str(e.value)
  assert message.startswith(f'alias_table: {path}: 7 bad row(s): ')
  for line in ('line 3: bad wikipedia_title', 'line 4: priority',
               'line 5: mid', 'line 6: Emmanuel_Macron already on line 2',
               "line 7: alias '!!!'", "line 8: type 'CITY'",
               'line 9: 6 tab-separated cells'):
    assert line in message
  assert message.count('; line ') == 6  # each once


@pytest.mark.parametrize('name,text,problem', [
    ('t.jsonl', '{"wikipedia_title": "A_B", "alias": ["x"]}\n',
     'line 1: unknown field(s) alias'),
    ('t.jsonl', 'not json\n', 'line 1: not JSON'),
    ('t.jsonl', '["A_B"]\n', 'line 1: not a JSON object'),
    ('t.jsonl', '{"wikipedia_title": "A_B", "aliases": "x"}\n',
     'aliases must be a list of strings'),
    ('t.jsonl', '{"aliases": ["x"]}\n', 'missing wikipedia_title'),
    ('t.tsv', 'wikipedia_title\tnames\n', 'header'),
    ('t.tsv', '# only comments\n', 'no people in the table'),
    ('t.csv', 'A_B\n', 'unknown format'),
])
def test_bad_tables_name_the_problem(tmp_path, name, text, problem):
  path = tmp_path / name
  path.write_text(text, encoding='utf-8')
  with pytest.raises(ConfigError, match='alias_table') as e:
    AliasSource(str(path))
  assert problem in str(e.value)


def test_a_missing_table_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match='cannot read'):
    AliasSource(str(tmp_path / 'missing.tsv'))


def test_the_pipeline_reports_a_bad_table_as_one_usage_line(tmp_path, capsys):
  path = tmp_path / 'bad.jsonl'
  path.write_text('{"wikipedia_title": "A B"}\n', encoding='utf-8')
  argv = ['--input', str(tmp_path / 'in.jsonl'), '--output', 'o',
          '--alias_table', str(path)]
  with pytest.raises(launch.UsageError) as e:
    moderate.run(argv)
  assert e.value.flag == '--alias_table'
  assert launch.main(moderate.run, argv) == launch.EXIT_USAGE
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'line 1: bad wikipedia_title' in err
  with pytest.raises(launch.UsageError) as e:
    moderate.run(argv[:4] + ['--title_prefixes', 'prime minister'])
  assert e.value.flag == '--title_prefixes'


def test_the_built_in_table_is_found_in_the_package_not_by_a_path():
  # What a worker unpickles holds no path to the submitting machine's
  # checkout; the table is read from the installed package there.
  transform = ExtractEntities('local')
  data = pickler.dumps(transform._fn)  # pylint: disable=protected-access
  assert ROOT.encode() not in data and b'person_aliases' not in data
  fn = pickler.loads(data)
  assert fn._source.path is None  # pylint: disable=protected-access
  assert len(fn._source.table().people) >= 300  # pylint: disable=protected-access


def test_the_package_ships_and_finds_its_knowledge_files(tmp_path):
  # pyproject.toml's package data covers knowledge/*, and a process started
  # elsewhere finds the files through importlib.resources alone.
  import fnmatch
  import glob
  import tomllib
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)
  patterns = project['tool']['setuptools']['package-data'][
      'transforms.moderation']
  shipped = [os.path.relpath(p, os.path.join(ROOT, 'transforms', 'moderation'))
             for p in glob.glob(os.path.join(ROOT, 'transforms', 'moderation',
                                             'knowledge', '*'))]
  assert sorted(shipped) == ['knowledge/common_words.txt',
                             'knowledge/person_aliases.tsv']
  for name in shipped:
    assert any(fnmatch.fnmatch(name, p) for p in patterns), name
  script = ('from transforms.moderation import alias_tables as a;'
            'print(len(a.AliasSource().people()), len(a.common_words()))')
  out = subprocess.run(
      [sys.executable, '-c', script], cwd=tmp_path, check=True,
      capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=ROOT)).stdout.split()
  assert int(out[0]) >= 300 and int(out[1]) > 10_000
  assert alias_tables.resource_text('person_aliases.tsv').startswith('#')
