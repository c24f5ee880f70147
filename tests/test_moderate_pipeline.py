"""python -m pipelines.moderate in batch replay, end to end over files."""
import glob
import json

import pytest
from apache_beam.utils.timestamp import Timestamp

from pipelines import launch
from pipelines import moderate
from harness.comments_demo import MALFORMED
from harness.comments_demo import make_comments
from common.event_time import parse_timestamp
from transforms.moderation.entities import LocalEntityFn
from transforms.moderation.entities import keep
from harness.moderation_fixtures import replay


def _read(pattern):
  return [json.loads(l) for f in sorted(glob.glob(pattern))
          for l in open(f, encoding='utf-8')]


def test_batch_replay_decides_every_comment_like_the_sorted_rule(tmp_path):
  comments = make_comments(300, seed=1, commenters=15)
  lines = [json.dumps(c) for c in comments] + MALFORMED
  half = len(lines) // 2
  (tmp_path / 'comments-1.jsonl').write_text('\n'.join(lines[:half]) + '\n')
  (tmp_path / 'comments-2.jsonl').write_text('\n'.join(lines[half:]) + '\n')
  out = str(tmp_path / 'out' / 'moderation')
  assert moderate.run(['--input', str(tmp_path / 'comments-*.jsonl'),
                       '--output', out]) == 0

  decisions = _read(out + '-decisions-*.jsonl')
  dead = _read(out + '-dead_letters-*.jsonl')
  # Inputs = decisions + dead letters, and the dead letters carry the raw.
  assert len(decisions) + len(dead) == len(lines)
  assert sorted(d['raw'] for d in dead) == sorted(MALFORMED)
  assert {d['decision'] for d in decisions} == {'allow', 'reject'}

  # The oracle: the same entities, decided by the plain sorted rule.
  fn = LocalEntityFn()
  fn.setup()
  entities = fn.annotate([c['text'] for c in comments])
  expected = replay([
      dict(c, timestamp=Timestamp(parse_timestamp(c['timestamp'])).to_rfc3339(),
           entities=keep(e, {'PERSON'}))
      for c, e in zip(comments, entities)])
  key = lambda d: d['comment_id']
  assert sorted(decisions, key=key) == sorted(expected, key=key)
  rejected = [d for d in decisions if d['decision'] == 'reject']
  assert all(d['blocked_by'] for d in rejected)


@pytest.mark.parametrize('argv,flag', [
    (['--output', 'x'], '--input'),
    (['--input', 'a', '--input_subscription', 'projects/p/subscriptions/s',
      '--output', 'x'], '--input'),
    (['--input', 'a'], '--output'),
    (['--input_subscription', 'projects/p/subscriptions/s',
      '--dead_letter_topic', 'projects/p/topics/d'], '--output_topic'),
    (['--input', 'a', '--output', 'x', '--window_hours', '0'],
     '--window_hours'),
    (['--input', 'a', '--output', 'x', '--decision_interval', '-1'],
     '--decision_interval'),
    (['--input', 'a', '--output', 'x', '--entity_types', ' , '],
     '--entity_types'),
    (['--input', 'a', '--output', 'x', '--timestamp_attribute', 'ts'],
     '--timestamp_attribute'),
    (['--input', 'no/such/comments*.jsonl', '--output', 'x'], '--input'),
    (['--input', 'a', '--output', 'x', '--alias_table', '/nonexistent.tsv'],
     '--alias_table'),
])
def test_bad_command_lines_fail_early_naming_the_flag(argv, flag):
  with pytest.raises(launch.UsageError) as e:
    moderate.run(argv)
  assert e.value.flag == flag


def test_help_lists_every_flag(capsys):
  with pytest.raises(SystemExit) as done:
    moderate.run(['--help'])
  assert done.value.code == 0
  text = capsys.readouterr().out
  for flag in ('--input_subscription', '--output_topic', '--window_hours',
               '--allowed_lateness', '--decision_interval', '--entity_backend',
               '--entity_types',
               '--timestamp_attribute', '--nlp_endpoint'):
    assert flag in text


@pytest.mark.parametrize('argv, size', [
    ([], 64), (['--entity_batch_size', '8'], 8),
    (['--entity_backend', 'nlp'], 32),
    (['--entity_backend', 'nlp', '--entity_batch_size', '4'], 4)])
def test_entity_batch_size_defaults_per_backend(argv, size):
  args, _ = moderate.build_parser().parse_known_args(
      ['--input', 'x.jsonl', '--output', 'o'] + argv)
  fn = moderate._entity_transform(args)._fn  # pylint: disable=protected-access
  assert fn._batch_size == size  # pylint: disable=protected-access
