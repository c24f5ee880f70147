"""batch_predict fed what a new user feeds it (issue #23): records that are
not text, CSV files as spreadsheets write them, shards cut short, inputs
whose every record is wrong the same way. No crash, nothing lost: every
record read is a prediction or a dead letter with its reason."""
import base64
import json

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import batch_predict
from tests import batch_io
from tests.tiny_two_phase import tiny_phase1  # noqa: F401 pylint: disable=unused-import
from tests.usage_errors import one_line_error

GOOD = [{'key': f'g{i}', 'text': f'great film {i}'} for i in range(6)]


def _run(tmp_path, inputs, model_dir, *extra):
  output = str(tmp_path / 'out' / 'predictions')
  figures = batch_predict.run([
      '--input', inputs, '--model_dir', model_dir, '--output', output,
      '--feature_map', 'reviews=text', '--batch_size', '4',
      '--runner', 'FnApiRunner', *extra])
  return figures, output


def _outcome(output):
  """(predicted keys, {key or raw: reason}) of a finished run."""
  keys = sorted(o['key'] for o in batch_io.read_jsonl(output))
  return keys, batch_io.read_jsonl(output + '_errors')


def _raw_bytes(dead):
  """A dead letter's raw input as the bytes it was read as."""
  if dead.get('raw_encoding') == 'base64':
    return base64.b64decode(dead['raw'])
  return dead['raw'].encode('utf-8')


def test_lines_that_are_not_unicode_text_are_dead_letters_byte_for_byte(
    tmp_path, tiny_model_dir):
  bad = [
      b'{"key": "s1", "text": "\\ud800 escaped"}',   # JSON-escaped surrogate
      b'{"key": "s2", "text": "\xed\xa0\x80 bytes"}',  # UTF-8 of a surrogate
      b'{"key": "s3", "text": "\xff\xfe latin"}',      # not UTF-8 at all
  ]
  lines = [json.dumps(r).encode() for r in GOOD] + bad
  path = tmp_path / 'in.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  keys, dead = _outcome(output)
  assert keys == sorted(r['key'] for r in GOOD)
  assert sorted(_raw_bytes(d) for d in dead) == sorted(bad)
  assert {d['reason'] for d in dead} == {'invalid_text'}
  # Bytes that are not text travel as base64, flagged.
  not_text = [d for d in dead if d.get('raw_encoding') == 'base64']
  assert sorted(_raw_bytes(d) for d in not_text) == sorted(bad[1:])
  assert figures['inputs'] == len(lines) and figures['reconciled']


def test_text_lines_that_are_not_unicode_are_byte_faithful_dead_letters(
    tmp_path, tiny_model_dir):
  path = tmp_path / 'in.txt'
  path.write_bytes(b'a fine review\n\xff\xfe not text\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir,
                         '--attach_keys', 'content_hash')
  _, dead = _outcome(output)
  (d,) = dead
  assert d['raw_encoding'] == 'base64'
  assert _raw_bytes(d) == b'\xff\xfe not text'
  assert figures['predictions'] == 1 and figures['reconciled']


def test_csv_rows_not_text_or_over_the_field_limit_are_dead_letters(
    tmp_path, tiny_model_dir):
  path = tmp_path / 'in.csv'
  long_text = 'x' * 140_000
  path.write_bytes(b'key,text\n'
                   b'a,great film\n'
                   b'b,"\xff\xfe bytes"\n'
                   + f'c,"{long_text}"\n'.encode() +
                   b'd,awful acting\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  keys, dead = _outcome(output)
  assert keys == ['a', 'd']
  by_reason = {d['reason']: d for d in dead}
  assert set(by_reason) == {'invalid_text', 'text_too_long'}
  assert _raw_bytes(by_reason['invalid_text']) == b'b,"\xff\xfe bytes"\n'
  assert by_reason['text_too_long']['key'] == 'c'
  assert figures['inputs'] == 4 and figures['reconciled']


def test_csv_unclosed_quote_counts_every_row_as_written(
    tmp_path, tiny_model_dir):
  path = tmp_path / 'in.csv'
  path.write_text('key,text\n'
                  'a,great film\n'
                  'b,"never closed\n'
                  'c,swallowed row\n'
                  'd,another one\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  keys, dead = _outcome(output)
  assert keys == ['a']
  assert sorted(d['raw'] for d in dead) == [
      'b,"never closed\n', 'c,swallowed row\n', 'd,another one\n']
  assert all(d['reason'] == 'unparseable' and 'line 3' in d['error']
             for d in dead)
  assert figures['inputs'] == 4 and figures['reconciled']


def test_csv_with_a_byte_order_mark_is_read(tmp_path, tiny_model_dir):
  path = tmp_path / 'excel.csv'
  path.write_bytes(b'\xef\xbb\xbfkey,text\r\na,great film\r\nb,awful\r\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  assert _outcome(output) == (['a', 'b'], [])
  assert figures['reconciled']


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) * 2 // 3])


@pytest.mark.parametrize('fmt', ['avro', 'parquet', 'tfrecord'])
def test_a_corrupt_shard_is_one_dead_letter_and_the_others_are_served(
    tmp_path, tiny_model_dir, fmt, capsys):
  rows = [{'key': f'k{i:03d}', 'text': f'great film {i} ' + 'x' * 40}
          for i in range(90)]
  pattern = batch_io.write_shards(tmp_path / 'in', rows, fmt, num_shards=3)
  (bad,) = sorted((tmp_path / 'in').glob('part-00001-*'))
  _truncate(bad)
  figures, output = _run(tmp_path, pattern, tiny_model_dir)
  keys, dead = _outcome(output)
  shard_dead = [d for d in dead if d['reason'] == 'unreadable_file']
  assert len(shard_dead) == 1 and len(dead) == 1
  assert shard_dead[0]['raw'] == {'file': str(bad)}
  assert shard_dead[0]['error']
  # The good shards are served whole; of the bad one, what could be read.
  good_keys = {r['key'] for i, r in enumerate(rows) if i % 3 != 1}
  assert good_keys <= set(keys) and len(keys) < len(rows)
  assert set(keys) <= {r['key'] for r in rows}
  assert figures['reconciled']
  assert 'unreadable files' in capsys.readouterr().out


def test_a_dotted_key_field_reads_a_nested_key(tmp_path, tiny_model_dir):
  path = tmp_path / 'in.jsonl'
  path.write_text(''.join(
      json.dumps({'meta': {'id': r['key']}, 'text': r['text']}) + '\n'
      for r in GOOD))
  figures, output = _run(tmp_path, str(path), tiny_model_dir,
                         '--key_field', 'meta.id')
  assert _outcome(output) == (sorted(r['key'] for r in GOOD), [])
  assert figures['reconciled']


def test_every_record_dead_for_one_reason_is_called_out_in_the_summary(
    tmp_path, tiny_model_dir, capsys):
  path = tmp_path / 'in.jsonl'
  path.write_text(''.join(json.dumps({'id': r['key'], 'text': r['text']})
                          + '\n' for r in GOOD))
  figures, _ = _run(tmp_path, str(path), tiny_model_dir)
  assert figures['dead_letters_by_reason'] == {'missing_key': len(GOOD)}
  out = capsys.readouterr().out
  assert 'WARNING: every input was dead-lettered as missing_key' in out


def test_a_list_where_a_string_is_expected_is_wrong_type(
    tmp_path, tiny_model_dir):
  path = tmp_path / 'in.jsonl'
  path.write_text(''.join(json.dumps(r) + '\n' for r in GOOD) +
                  json.dumps({'key': 'l1', 'text': ['a', 'b']}) + '\n' +
                  json.dumps({'key': 'l2', 'text': [['nested']]}) + '\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  keys, dead = _outcome(output)
  assert keys == sorted(r['key'] for r in GOOD)
  assert sorted((d['key'], d['reason']) for d in dead) == [
      ('l1', 'wrong_type'), ('l2', 'wrong_type')]
  assert figures['reconciled']


def _usage_error(capsys, argv):
  return one_line_error(capsys, batch_predict.run, argv)


def _write_avro(path, fields):
  schema = {'type': 'record', 'name': 'R', 'fields': [
      {'name': f, 'type': 'string'} for f in fields]}
  with open(path, 'wb') as f:
    fastavro.writer(f, schema, [{f: 'v' for f in fields}])


@pytest.mark.parametrize('make, argv, expected', [
    (lambda d: (d / 'in.csv').write_text('id,text\na,great\n'), [],
     "--key_field: 'key' is not a column of"),
    (lambda d: _write_avro(d / 'in.avro', ['key', 'body']), [],
     "--feature_map: field 'text' (signature input 'reviews') is not in"),
    (lambda d: pq.write_table(pa.Table.from_pylist([{'k': 'a', 'text': 't'}]),
                              d / 'in.parquet'), [],
     "--key_field: 'key' is not a column of"),
    (lambda d: (d / 'in.csv').write_text('{"key": "a", "text": "t"}\n'),
     ['--input_format', 'csv'], '--input_format: csv, but'),
])
def test_a_schema_known_up_front_is_checked_at_construction(
    tmp_path, tiny_model_dir, capsys, make, argv, expected):
  make(tmp_path)
  (path,) = [p for p in tmp_path.iterdir() if p.suffix != '']
  err = _usage_error(capsys, [
      '--input', str(path), '--model_dir', tiny_model_dir,
      '--feature_map', 'reviews=text', '--output', str(tmp_path / 'o'),
      '--runner', 'FnApiRunner', *argv])
  assert expected in err


@pytest.mark.parametrize('flag, where', [
    ('--output', '{file}/predictions'),
    ('--output', '/proc/predictions'),
    ('--output', '/sys/x/predictions'),
    ('--output', '{readonly}/predictions'),
    ('--dead_letter', '{file}/errors'),
    ('--dead_letter', '/proc/errors'),
    ('--prediction_log', '{file}/log'),
])
def test_an_unwritable_output_is_one_line_at_construction(
    tmp_path, tiny_model_dir, capsys, flag, where):
  import os
  if os.geteuid() == 0 and 'readonly' in where:
    pytest.skip('root writes anywhere')
  (tmp_path / 'file').write_text('a file, not a folder')
  readonly = tmp_path / 'readonly'
  readonly.mkdir(mode=0o555)
  inputs = batch_io.write_shards(tmp_path / 'in', GOOD, 'jsonl', 1)
  path = where.format(file=tmp_path / 'file', readonly=readonly)
  argv = ['--input', inputs, '--model_dir', tiny_model_dir,
          '--feature_map', 'reviews=text', '--runner', 'FnApiRunner',
          '--output', str(tmp_path / 'o' / 'predictions'), flag, path]
  err = _usage_error(capsys, argv)
  assert f'{flag}: cannot write under' in err


@pytest.mark.parametrize('argv, expected', [
    (['--runner', 'NoSuchRunner'], "--runner: unknown runner 'NoSuchRunner'"),
    (['--runnr', 'FnApiRunner'], "unknown flag '--runnr'"),
    (['--batch_sise=4'], "unknown flag '--batch_sise'"),
])
def test_an_unknown_runner_or_flag_is_one_line(
    tmp_path, tiny_model_dir, capsys, argv, expected):
  inputs = batch_io.write_shards(tmp_path / 'in', GOOD, 'jsonl', 1)
  err = _usage_error(capsys, [
      '--input', inputs, '--model_dir', tiny_model_dir,
      '--feature_map', 'reviews=text', '--output', str(tmp_path / 'o'),
      *argv])
  assert expected in err


def test_beam_flags_still_pass_through(tmp_path, tiny_model_dir):
  inputs = batch_io.write_shards(tmp_path / 'in', GOOD, 'jsonl', 1)
  figures, _ = _run(tmp_path, inputs, tiny_model_dir,
                    '--direct_num_workers=2', '--experiments', 'a_b',
                    '--no_pipeline_type_check', '--job_name=bad-input')
  assert figures['predictions'] == len(GOOD)


def test_two_phase_replay_dead_letters_a_pending_line_that_is_not_text(
    tmp_path, tiny_model_dir):
  from pipelines import two_phase  # pylint: disable=import-outside-toplevel
  good = {'key': 'a', 'phase1_score': 0.5, 'phase1_model': 'm',
          'reason': 'phase2_unavailable',
          'record': {'key': 'a', 'text': 'great film'}}
  path = tmp_path / 'pending.jsonl'
  path.write_bytes(json.dumps(good).encode() + b'\n{"key": "b\xff"}\n')
  output = str(tmp_path / 'out' / 'decisions')
  figures = two_phase.run([
      '--input', str(path), '--output', output, '--replay_pending',
      '--phase2_model_dir', tiny_model_dir, '--runner', 'FnApiRunner'])
  assert [d['key'] for d in batch_io.read_jsonl(output)] == ['a']
  (dead,) = batch_io.read_jsonl(output + '_errors')
  assert dead['reason'] == 'invalid_text'
  assert _raw_bytes(dead) == b'{"key": "b\xff"}'
  assert figures['reconciled']


@pytest.mark.parametrize('argv, expected', [
    (['--pending', '{file}/pending'], '--pending: cannot write under'),
    (['--input', '{csv}'], "--text_field: field 'text' (the text both "
     'phases read) is not in'),
    (['--phase1_batch_sise', '4'], "unknown flag '--phase1_batch_sise'"),
])
def test_two_phase_usage_errors_are_one_line(
    tmp_path, tiny_phase1, capsys, argv, expected):
  from pipelines import two_phase  # pylint: disable=import-outside-toplevel
  (tmp_path / 'file').write_text('a file')
  (tmp_path / 'in.csv').write_text('key,body\na,great\n')
  inputs = batch_io.write_shards(tmp_path / 'in', GOOD, 'jsonl', 1)
  fill = {'file': tmp_path / 'file', 'csv': tmp_path / 'in.csv'}
  argv = [a.format(**fill) for a in argv]
  if '--input' not in argv:
    argv += ['--input', inputs]
  err = one_line_error(capsys, two_phase.run, [
      '--output', str(tmp_path / 'o' / 'decisions'),
      '--phase1_model', tiny_phase1[0], '--forward', 'positive:0.5',
      '--runner', 'FnApiRunner', *argv])
  assert expected in err
