"""Flex Templates: generated files in sync, valid against the Dataflow v1b3
API schema, every parameter accepted by its pipeline. (The image:
tests/test_images.py.)"""
import argparse
import json
import re

import pytest

from pipelines import flags
from templates import dataflow_api
from templates import generate
from templates import registry

TEMPLATES = registry.TEMPLATES
IDS = [t.pipeline for t in TEMPLATES]
ROOT = registry.REPO_ROOT


def _committed_metadata(template):
  return json.loads((template.folder / 'metadata.json').read_text())


def test_generated_files_are_in_sync_with_the_parsers():
  assert generate.stale() == [], 'run: python -m templates.generate'
  assert generate.main(['--check']) == 0


def test_check_reports_a_hand_edited_file(tmp_path, monkeypatch):
  monkeypatch.setattr(registry, 'REPO_ROOT', tmp_path)
  assert generate.main(['--check']) == 1  # nothing generated there yet
  for path, text in generate.outputs().items():
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text(text)
  assert generate.stale() == []
  edited = tmp_path / 'docs' / 'options.md'
  edited.write_text(edited.read_text().replace('| yes |', '| no |', 1))
  assert generate.stale() == ['docs/options.md']


@pytest.mark.parametrize('template', TEMPLATES, ids=IDS)
def test_metadata_is_valid_against_the_discovery_schema(template):
  meta = _committed_metadata(template)
  assert dataflow_api.errors(meta, 'TemplateMetadata') == []
  assert meta['streaming'] is template.streaming
  assert meta['parameters'], 'a template without parameters'


def test_the_schema_check_catches_what_the_service_would_ignore_or_refuse():
  good = {'name': 'n', 'parameters': [
      {'name': 'x', 'label': 'X', 'helpText': 'h', 'paramType': 'TEXT'}]}
  assert dataflow_api.errors(good, 'TemplateMetadata') == []
  typo = {'name': 'n', 'parameters': [
      {'name': 'x', 'label': 'X', 'helptext': 'h'}]}
  problems = dataflow_api.errors(typo, 'TemplateMetadata')
  assert any('helptext: unknown field' in p for p in problems)
  assert any('helpText: required field missing' in p for p in problems)
  bad_type = {'name': 'n', 'parameters': [
      {'name': 'x', 'label': 'X', 'helpText': 'h', 'paramType': 'GCS_FILE',
       'isOptional': 'yes'}]}
  problems = dataflow_api.errors(bad_type, 'TemplateMetadata')
  assert any("'GCS_FILE' is not one of" in p for p in problems)
  assert any('isOptional: expected boolean' in p for p in problems)
  assert dataflow_api.errors({'parameters': []}, 'TemplateMetadata') == [
      'TemplateMetadata.name: required field missing']


def _sample_values(param):
  """(text, parsed value) pairs a user could give this parameter."""
  if 'enumOptions' in param:
    return [(o['value'], o['value']) for o in param['enumOptions']]
  if param['paramType'] == 'BOOLEAN':
    return [('true', True), ('false', False)]
  if param['paramType'] == 'NUMBER':
    return [('7', 7)]
  if param['paramType'].startswith('GCS_'):
    return [('gs://test-bucket/some/path', 'gs://test-bucket/some/path')]
  if param['paramType'] == 'PUBSUB_TOPIC':
    return [('projects/p/topics/t',) * 2]
  if param['paramType'] == 'PUBSUB_SUBSCRIPTION':
    return [('projects/p/subscriptions/s',) * 2]
  return [('some-text', 'some-text')]


@pytest.mark.parametrize('template', TEMPLATES, ids=IDS)
def test_every_parameter_is_accepted_by_the_pipeline_parser(template):
  """Passed as the launcher passes it, --name=value, each parameter parses
  to the intended value, leaves nothing for Beam, and matches its regexes."""
  parser = template.parser()
  params = _committed_metadata(template)['parameters']
  flags = {a.dest for a in parser._actions if a.option_strings} - {'help'}
  assert {p['name'] for p in params} == flags
  for param in params:
    required = [f'--{p["name"]}={_sample_values(p)[0][0]}' for p in params
                if not p['isOptional'] and p is not param]
    for text, expected in _sample_values(param):
      args, beam_args = parser.parse_known_args(
          required + [f'--{param["name"]}={text}'])
      assert beam_args == []
      value = getattr(args, param['name'])
      assert value in (expected, [expected]), (param['name'], value)
      for regex in param.get('regexes', []):
        assert re.fullmatch(regex, text), (param['name'], regex, text)


@pytest.mark.parametrize('template', TEMPLATES, ids=IDS)
def test_regexes_refuse_what_the_parser_refuses(template):
  parser = template.parser()
  parser.exit = lambda *a, **k: (_ for _ in ()).throw(ValueError(a))
  parser.error = lambda message: (_ for _ in ()).throw(ValueError(message))
  params = _committed_metadata(template)['parameters']
  required = [f'--{p["name"]}={_sample_values(p)[0][0]}'
              for p in params if not p['isOptional']]
  parser.parse_known_args(required)  # raises nothing: only the bad value will
  checked = 0
  for param in params:
    if 'regexes' not in param:
      continue
    for bad in ('not-a-choice-or-number', '1.5x'):
      assert not any(re.fullmatch(r, bad) for r in param['regexes'])
      with pytest.raises(ValueError):
        parser.parse_known_args(required + [f'--{param["name"]}={bad}'])
      checked += 1
  assert checked


def test_switches_work_bare_and_with_a_value():
  parser = argparse.ArgumentParser()
  flags.Flag('flag', switch=True, help='h').add_to(parser)
  assert parser.parse_args([]).flag is False
  assert parser.parse_args(['--flag']).flag is True
  assert parser.parse_args(['--flag=true']).flag is True
  assert parser.parse_args(['--flag=False']).flag is False
  assert generate.param_type(parser._actions[-1]) == 'BOOLEAN'
  assert generate.regexes(parser._actions[-1]) == [generate.BOOLEAN_REGEX]


@pytest.mark.parametrize('declare, problem', [
    (lambda p: p.add_argument('--flag', action='store_true', help='h'),
     'takes no value'),
    (lambda p: p.add_argument('--runner', help='h'), 'shadows the Beam'),
    (lambda p: p.add_argument('--x', help=None), 'no help text'),
    (lambda p: p.add_argument('-x', '--long', dest='other', help='h'),
     'must be spelled --other'),
])
def test_generator_refuses_flags_a_template_cannot_set(declare, problem):
  parser = argparse.ArgumentParser(prog='p', description='d')
  declare(parser)
  with pytest.raises(generate.GenerationError, match=problem):
    generate.parameters(parser)


def test_param_types_follow_flag_naming_conventions():
  parser = argparse.ArgumentParser()
  for flag in ('--input', '--input_subscription', '--output_topic',
               '--dead_letter_topic', '--output_table', '--model_dir',
               '--output_dir', '--output', '--dead_letter', '--feature_map'):
    parser.add_argument(flag, help='h')
  parser.add_argument('--format', choices=['a', 'b'], help='h')
  parser.add_argument('--rate', type=float, help='h')
  types = {p['name']: p['paramType'] for p in generate.parameters(parser)}
  assert types == {
      'input': 'GCS_READ_FILE', 'input_subscription': 'PUBSUB_SUBSCRIPTION',
      'output_topic': 'PUBSUB_TOPIC', 'dead_letter_topic': 'PUBSUB_TOPIC',
      'output_table': 'BIGQUERY_TABLE', 'model_dir': 'GCS_READ_FOLDER',
      'output_dir': 'GCS_WRITE_FOLDER', 'output': 'GCS_WRITE_FILE',
      'dead_letter': 'GCS_WRITE_FILE', 'feature_map': 'TEXT',
      'format': 'ENUM', 'rate': 'NUMBER'}
  queries = {p['name']: p['paramType'] for p in _committed_metadata(
      registry.by_name('batch_predict'))['parameters']}
  assert queries['input_query'] == 'TEXT'  # SQL text, not a file to read
  declared = flags.Flag('declared', template_type='GCS_READ_FILE', help='h')
  declared.add_to(parser)
  overridden = generate.parameters(parser)
  assert overridden[-1]['paramType'] == 'GCS_READ_FILE'


def test_options_doc_lists_every_flag_of_every_pipeline():
  doc = (ROOT / generate.OPTIONS_DOC).read_text()
  for template in TEMPLATES:
    assert f'## {template.pipeline}' in doc
    for action in template.parser()._actions:
      if action.option_strings and action.dest != 'help':
        assert f'| `--{action.dest}` |' in doc
