"""moderate (batch replay) fed bad input and bad flags (issue #23): lines
that are not text, one comment_id from two commenters, an output it cannot
write."""
import base64
import glob
import json

import pytest

from pipelines import moderate
from tests.usage_errors import one_line_error


def _read(pattern):
  return [json.loads(l) for f in sorted(glob.glob(pattern))
          for l in open(f, encoding='utf-8')]


def _comment(comment_id, commenter_id, text, second):
  return json.dumps({'comment_id': comment_id, 'commenter_id': commenter_id,
                     'text': text,
                     'timestamp': f'2024-05-01T12:00:{second:02d}Z'}).encode()


def _replay(tmp_path, lines):
  (tmp_path / 'comments.jsonl').write_bytes(b'\n'.join(lines) + b'\n')
  out = str(tmp_path / 'out' / 'moderation')
  assert moderate.run(['--input', str(tmp_path / 'comments.jsonl'),
                       '--output', out]) == 0
  return _read(out + '-decisions-*'), _read(out + '-dead_letters-*')


def test_lines_that_are_not_text_are_dead_letters_byte_for_byte(tmp_path):
  good = [_comment(f'c{i}', f'u{i}', 'a fine day', i) for i in range(4)]
  bad = [b'{"comment_id": "b1", "commenter_id": "u", "text": "\xff\xfe", '
         b'"timestamp": 1}',
         b'{"comment_id": "b2", "commenter_id": "u", "text": "\\ud800", '
         b'"timestamp": 1}',
         b'{"comment_id": "b3", "commenter_id": "u", "text": "\xed\xa0\x80",'
         b' "timestamp": 1}']
  decisions, dead = _replay(tmp_path, good + bad)
  assert sorted(d['comment_id'] for d in decisions) == ['c0', 'c1', 'c2', 'c3']
  assert [d['reason'] for d in dead] == ['invalid_text'] * 3
  replayed = sorted(base64.b64decode(d['raw']) if d.get('raw_encoding')
                    else d['raw'].encode() for d in dead)
  assert replayed == sorted(bad)


def test_one_comment_id_from_two_commenters_is_decided_once(tmp_path):
  lines = [_comment('c1', 'late-commenter', 'first words', 30),
           _comment('c1', 'early-commenter', 'other words', 10),
           _comment('c1', 'third', 'more words', 20),
           _comment('c2', 'early-commenter', 'fine', 40)]
  decisions, dead = _replay(tmp_path, lines)
  assert sorted((d['comment_id'], d['commenter_id']) for d in decisions) == [
      ('c1', 'early-commenter'), ('c2', 'early-commenter')]
  assert sorted((d['key'], d['reason'], json.loads(d['raw'])['commenter_id'])
                for d in dead) == [
      ('c1', 'duplicate', 'late-commenter'), ('c1', 'duplicate', 'third')]


@pytest.mark.parametrize('extra, expected', [
    (['--output', '{file}/moderation'], '--output: cannot write under'),
    (['--output', '/sys/moderation'], '--output: cannot write under'),
    (['--runnr', 'DirectRunner'], "unknown flag '--runnr'"),
    (['--runner', 'NoSuchRunner'], '--runner: unknown runner'),
])
def test_bad_flags_are_one_line(tmp_path, capsys, extra, expected):
  (tmp_path / 'file').write_text('a file')
  (tmp_path / 'comments.jsonl').write_bytes(_comment('c', 'u', 'hi', 1))
  argv = ['--input', str(tmp_path / 'comments.jsonl'),
          '--output', str(tmp_path / 'out' / 'moderation')]
  argv += [a.format(file=tmp_path / 'file') for a in extra]
  assert expected in one_line_error(capsys, moderate.run, argv)
