"""End to end: the batch serving job over every input format and failure."""
import json
import os
import random
import subprocess
import sys

import pytest

from models.runtime import predictor
from pipelines import batch_predict
from pipelines import launch
from pipelines import local_runner
from tests import batch_io
from tests.tiny_models import POISON
from transforms.keyed import keys

TEXTS = ['great film', 'awful acting', 'loved it', 'a dull mess',
         'wonderful story and superb cast', 'terrible waste of time',
         'brilliant', 'boring', 'excellent fun', 'hated it every minute']
ROWS = [{'key': f'k{i:03d}', 'text': f'{TEXTS[i % len(TEXTS)]} {i}'}
        for i in range(60)]


def _run(tmp_path, inputs, model_dir, *extra, name='out'):
  output = str(tmp_path / name / 'predictions')
  figures = batch_predict.run([
      '--input', inputs, '--model_dir', model_dir, '--output', output,
      '--feature_map', 'reviews=text', '--batch_size', '16',
      '--runner', 'FnApiRunner', *extra])
  return figures, output


def _expected(model_dir, rows):
  p = predictor.load(model_dir)
  outs = p.predict([r['text'] for r in rows])
  return {r['key']: o['positive_review_probability'] for r, o in zip(rows, outs)}


@pytest.mark.parametrize('fmt', ['jsonl', 'csv', 'avro', 'parquet', 'tfrecord'])
def test_every_key_gets_the_signature_prediction_in_every_format(
    tmp_path, tiny_model_dir, fmt):
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS, fmt, num_shards=3)
  figures, output = _run(tmp_path, pattern, tiny_model_dir)
  rows = batch_io.read_jsonl(output)
  expected = _expected(tiny_model_dir, ROWS)
  assert sorted(r['key'] for r in rows) == sorted(expected)
  for r in rows:
    assert r['predictions']['positive_review_probability'] == pytest.approx(
        expected[r['key']], abs=1e-6)
    assert r['model_version'] == 'tiny/1'
    assert r['predicted_at'].endswith('+00:00')
  assert figures['inputs'] == 60 and figures['predictions'] == 60
  assert figures['dead_letters'] == 0 and figures['reconciled']


def test_output_does_not_depend_on_order_sharding_or_overlap(
    tmp_path, tiny_model_dir):
  shuffled = list(ROWS)
  random.Random(5).shuffle(shuffled)
  a = batch_io.write_shards(tmp_path / 'a', ROWS, 'jsonl', num_shards=1)
  b = batch_io.write_shards(tmp_path / 'b', shuffled, 'jsonl', num_shards=7)
  # a: model calls in the worker thread; b: four in flight, smaller batches.
  _, out_a = _run(tmp_path, a, tiny_model_dir, '--inference_threads', '0',
                  name='a')
  _, out_b = _run(tmp_path, b, tiny_model_dir, '--batch_size', '5',
                  '--inference_threads', '4', name='b')

  def by_key(prefix):
    return {r['key']: r['predictions'] for r in batch_io.read_jsonl(prefix)}
  got_a, got_b = by_key(out_a), by_key(out_b)
  assert got_a.keys() == got_b.keys()
  for key in got_a:
    assert got_a[key]['positive_review_logits'] == pytest.approx(
        got_b[key]['positive_review_logits'], abs=1e-5)


def test_every_dead_letter_reason_and_counts_reconcile(tmp_path, tiny_model_dir):
  good = [{'key': f'g{i}', 'text': TEXTS[i % len(TEXTS)]} for i in range(20)]
  bad_lines = [
      '{"key": "u1", "text": ',                        # unparseable
      '[1, 2, 3]',                                     # not an object
      json.dumps({'text': 'no key here'}),             # missing_key
      json.dumps({'key': '  ', 'text': 'blank key'}),  # missing_key
      json.dumps({'key': 'g3', 'text': 'dup of g3'}),  # duplicate_key
      json.dumps({'key': 'f1'}),                       # missing_feature
      json.dumps({'key': 'f2', 'text': 42}),           # wrong_type
      json.dumps({'key': 'f3', 'text': '   '}),        # empty_text
      json.dumps({'key': 'f4', 'text': 'x' * 200}),    # text_too_long
  ]
  path = tmp_path / 'in' / 'mixed.jsonl'
  path.parent.mkdir()
  lines = [json.dumps(r) for r in good] + bad_lines
  random.Random(1).shuffle(lines)
  path.write_text('\n'.join(lines) + '\n')

  # One output shard, like the dead letters: the prediction sink's cleanup
  # glob (<output>-*-of-00001.jsonl) must not match the dead-letter files.
  figures, output = _run(tmp_path, str(path), tiny_model_dir,
                         '--max_text_bytes', '100', '--num_shards', '1')
  dead = batch_io.read_jsonl(output + '_errors')
  reasons = sorted(d['reason'] for d in dead)
  assert reasons == sorted([
      'unparseable', 'unparseable', 'missing_key', 'missing_key',
      'duplicate_key', 'missing_feature', 'wrong_type', 'empty_text',
      'text_too_long'])
  assert figures['dead_letters_by_reason'] == {
      'unparseable': 2, 'missing_key': 2, 'duplicate_key': 1,
      'missing_feature': 1, 'wrong_type': 1, 'empty_text': 1,
      'text_too_long': 1}
  outputs = batch_io.read_jsonl(output)
  assert figures['inputs'] == len(lines) == len(outputs) + len(dead)
  assert figures['reconciled']
  # Dead letters carry the key (when there is one) and the complete record.
  by_reason = {d['reason']: d for d in dead}
  assert by_reason['wrong_type']['key'] == 'f2'
  assert by_reason['wrong_type']['raw'] == {'key': 'f2', 'text': 42}
  assert by_reason['unparseable']['key'] is None
  assert by_reason['duplicate_key']['key'] == 'g3'
  assert {d['raw'] for d in dead if d['reason'] == 'unparseable'} == {
      '{"key": "u1", "text": ', '[1, 2, 3]'}
  # The kept occurrence of g3 is chosen independently of input order.
  kept = [o for o in outputs if o['key'] == 'g3']
  assert len(kept) == 1


def test_a_failing_element_is_isolated_and_its_batch_mates_predicted(
    tmp_path, poison_model_dir):
  rows = [{'key': f'p{i:02d}', 'text': 'x' * (i + 1)} for i in range(23)]
  rows[9]['text'] = POISON
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 2)
  figures = batch_predict.run([
      '--input', pattern, '--model_dir', poison_model_dir,
      '--output', str(tmp_path / 'o'), '--feature_map', 'reviews=text',
      '--batch_size', '8', '--runner', 'FnApiRunner'])
  outputs = batch_io.read_jsonl(str(tmp_path / 'o'))
  dead = batch_io.read_jsonl(str(tmp_path / 'o_errors'))
  assert [d['key'] for d in dead] == ['p09']
  assert dead[0]['reason'] == 'inference_failed'
  assert 'poisoned batch' in dead[0]['error']
  assert dead[0]['raw'] == {'key': 'p09', 'text': POISON}
  assert {o['key']: o['predictions']['length'] for o in outputs} == {
      r['key']: float(len(r['text'])) for r in rows if r['text'] != POISON}
  assert figures['reconciled'] and figures['predictions'] == 22


def test_keys_sharing_a_digest_are_each_predicted(tmp_path, tiny_model_dir):
  # The duplicate-key check counts 32-bit digests of keys (keys.key_digest);
  # two different keys with the same one take the duplicate path and come
  # out as two predictions, not as each other's duplicates.
  a, b = 'review-a02552f76dbdf5fd', 'review-670009b22c087272'
  assert a != b and keys.key_digest(a) == keys.key_digest(b)
  rows = ROWS[:10] + [{'key': a, 'text': TEXTS[0]}, {'key': b, 'text': TEXTS[1]},
                      {'key': 'k000', 'text': 'a repeat of k000'}]
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 2)
  figures, output = _run(tmp_path, pattern, tiny_model_dir)
  keys_out = sorted(o['key'] for o in batch_io.read_jsonl(output))
  assert keys_out == sorted({r['key'] for r in rows})
  assert figures['dead_letters_by_reason'] == {'duplicate_key': 1}
  assert figures['reconciled'] and figures['inputs'] == len(rows)


def test_text_input_with_content_hash_keys(tmp_path, tiny_model_dir):
  rows = [{'text': t} for t in TEXTS] + [{'text': TEXTS[0]}]  # one repeat
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'text', 2)
  figures, output = _run(tmp_path, pattern, tiny_model_dir,
                         '--attach_keys', 'content_hash')
  outputs = batch_io.read_jsonl(output)
  assert len(outputs) == len(TEXTS)
  assert all(len(o['key']) == 32 for o in outputs)
  assert figures['dead_letters_by_reason'] == {'duplicate_key': 1}
  again, output2 = _run(tmp_path, pattern, tiny_model_dir,
                        '--attach_keys', 'content_hash', name='again')
  assert ({o['key'] for o in batch_io.read_jsonl(output2)} ==
          {o['key'] for o in outputs})


def test_keyed_signature_and_passthrough_fields(tmp_path, tiny_model_dir):
  rows = [{'key': f'k{i}', 'text': t, 'lang': 'en'} for i, t in enumerate(TEXTS)]
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 2)
  _, output = _run(tmp_path, pattern, tiny_model_dir,
                   '--signature', 'keyed_prediction',
                   '--passthrough_fields', 'lang,text')
  outputs = batch_io.read_jsonl(output)
  assert len(outputs) == len(rows)
  for o in outputs:
    assert o['predictions']['key'] == o['key']   # passed through the model
    assert o['lang'] == 'en' and o['text'] in TEXTS


@pytest.mark.parametrize('fmt', ['avro', 'parquet'])
def test_typed_output_formats_round_trip(tmp_path, tiny_model_dir, fmt):
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS[:20], 'jsonl', 2)
  figures, output = _run(tmp_path, pattern, tiny_model_dir,
                         '--output_format', fmt, '--passthrough_fields', 'text')
  rows = (batch_io.read_avro if fmt == 'avro' else batch_io.read_parquet)(output)
  expected = _expected(tiny_model_dir, ROWS[:20])
  assert {r['key'] for r in rows} == set(expected)
  for r in rows:
    assert r['predictions']['positive_review_probability'] == pytest.approx(
        expected[r['key']], abs=1e-6)
    assert r['model_version'] == 'tiny/1' and r['text']
  assert figures['reconciled']


def test_csv_fields_may_span_lines_and_bad_rows_are_dead_letters(
    tmp_path, tiny_model_dir):
  path = tmp_path / 'in.csv'
  path.write_text('key,text\n'
                  'a,"great film\nwith a second line"\n'
                  'b,awful acting\n'
                  'c,too,many,columns\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  assert sorted(o['key'] for o in batch_io.read_jsonl(output)) == ['a', 'b']
  (dead,) = batch_io.read_jsonl(output + '_errors')
  assert dead['reason'] == 'unparseable' and 'columns' in dead['error']
  assert figures['inputs'] == 3 and figures['reconciled']


@pytest.mark.parametrize('argv, flag', [
    (['--input', 'nowhere/*.jsonl'], '--input: no files match'),
    (['--input', '{inputs}', '--input_format', 'xml'], 'invalid choice'),
    (['--input', '{dir}/*'], '--input_format: cannot infer'),
    (['--input', '{inputs}', '--signature', 'nope'],
     "--signature: model '{model}' has no signature 'nope'"),
    (['--input', '{inputs}', '--feature_map', 'text=text'],
     "--feature_map: unknown signature input(s) ['text']"),
    (['--input', '{inputs}', '--model_dir', '{dir}'], '--model_dir: cannot read'),
    (['--input', '{inputs}', '--input_format', 'text'], '--attach_keys'),
    (['--input', '{inputs}', '--inference_threads', '-1'],
     '--inference_threads: must be at least 0'),
    # An unquoted pattern the shell expanded: the second file would be
    # dropped by Beam with a log line, and only the first one read.
    (['--input', '{inputs}', '{inputs}2', '--runner', 'FnApiRunner'],
     "unexpected argument '{inputs}2': quote file patterns"),
    (['--runner', 'FnApiRunner', '{inputs}2', '--input', '{inputs}'],
     "unexpected argument '{inputs}2'"),
])
def test_bad_command_lines_fail_with_one_clear_line(
    tmp_path, tiny_model_dir, capsys, argv, flag):
  inputs = batch_io.write_shards(tmp_path / 'in', ROWS[:3], 'jsonl', 1)
  fill = {'inputs': inputs, 'dir': str(tmp_path / 'in'), 'model': tiny_model_dir}
  argv = [a.format(**fill) for a in argv]
  if '--model_dir' not in argv:
    argv += ['--model_dir', tiny_model_dir]
  argv += ['--output', str(tmp_path / 'o')]
  try:
    code = launch.main(batch_predict.run, argv)
  except SystemExit as e:  # argparse's own errors (unknown choice)
    code = e.code
  err = capsys.readouterr().err.strip()
  assert code == 2
  assert flag.format(**fill) in err
  assert 'Traceback' not in err


def test_command_line_entry_point_exits_2_without_traceback(tmp_path):
  done = subprocess.run(
      [sys.executable, '-m', 'pipelines.batch_predict', '--input',
       str(tmp_path / 'none.jsonl'), '--model_dir', str(tmp_path),
       '--output', str(tmp_path / 'o')],
      capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert 'Traceback' not in done.stderr
  # Named as argparse names the job in its own errors.
  assert done.stderr.strip().splitlines()[-1].startswith(
      'python -m pipelines.batch_predict: error: --input: no files match')


def test_prediction_log_samples_the_same_keys_on_every_run(
    tmp_path, tiny_model_dir):
  from common.records.prediction_log import sampled
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', 3)
  logs = []
  for run in ('a', 'b'):
    _, output = _run(tmp_path, pattern, tiny_model_dir,
                     '--prediction_log', str(tmp_path / run / 'log'),
                     '--log_sample_rate', '0.5', name=run)
    logs.append(batch_io.read_jsonl(str(tmp_path / run / 'log')))
  expected_keys = {r['key'] for r in ROWS if sampled(r['key'], 0.5)}
  assert 0 < len(expected_keys) < len(ROWS)
  for rows in logs:
    assert {r['key'] for r in rows} == expected_keys
  predictions = {p['key']: p['predictions']
                 for p in batch_io.read_jsonl(output)}
  text = {r['key']: r['text'] for r in ROWS}
  for row in logs[0]:
    assert row['model'] == 'tiny' and row['model_version'] == 'tiny/1'
    assert json.loads(row['raw_data']) == {
        'instances': [{'reviews': text[row['key']]}]}
    assert json.loads(row['raw_prediction']) == {
        'predictions': [predictions[row['key']]]}
    assert row['groundtruth'] is None and row['time'].endswith('Z')


def test_local_and_distributed_runners_are_told_apart():
  from apache_beam.options.pipeline_options import PipelineOptions
  for runner in ('FnApiRunner', 'DirectRunner', 'BundleBasedDirectRunner'):
    assert local_runner.is_local(PipelineOptions(['--runner', runner]))
  assert local_runner.is_local(PipelineOptions([]))
  assert not local_runner.is_local(
      PipelineOptions(['--runner', 'DataflowRunner']))


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'),
                    reason='no CPU affinity on this platform')
def test_default_inference_threads_follow_the_cores_this_process_may_use():
  # Pinned to one core (a container's cpuset, taskset), a worker sees one
  # core, not the host's count: one model call in flight beside it.
  code = ('import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); '
          'from transforms.inference import chunked; '
          'print(chunked.usable_cores(), chunked.default_threads(True), '
          'chunked.default_threads(False))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout.split()
  assert out == ['1', '2', '0']


def test_direct_num_workers_alone_means_worker_threads(tmp_path, tiny_model_dir):
  from apache_beam.options.pipeline_options import DirectOptions
  from apache_beam.options.pipeline_options import PipelineOptions

  def mode(*argv):
    options = local_runner.pick_runner(PipelineOptions(list(argv)))
    return options.view_as(DirectOptions).direct_running_mode
  assert mode() == 'in_memory'
  assert mode('--direct_num_workers=2') == 'multi_threading'
  assert mode('--direct_num_workers=2',
              '--direct_running_mode=multi_processing') == 'multi_processing'
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', num_shards=4)
  figures, output = _run(tmp_path, pattern, tiny_model_dir,
                         '--direct_num_workers=2')
  assert figures['predictions'] == len(ROWS) and figures['reconciled']
  assert sorted(r['key'] for r in batch_io.read_jsonl(output)) == sorted(
      r['key'] for r in ROWS)


def test_repeated_keys_and_undecodable_lines_reach_dead_letters(
    tmp_path, tiny_model_dir):
  # The side path of repeated keys validates the kept record like the main
  # path; a line that is not UTF-8 is invalid_text, not a crash.
  good = [{'key': f'g{i}', 'text': TEXTS[i % len(TEXTS)]} for i in range(10)]
  lines = [json.dumps(r).encode() for r in good] + [
      json.dumps({'key': 'd1', 'text': ''}).encode(),      # kept, empty_text
      json.dumps({'key': 'd1', 'text': 'ok text'}).encode(),  # duplicate_key
      json.dumps({'key': 'd2', 'text': 'fine'}).encode(),  # kept, predicted
      json.dumps({'key': 'd2', 'text': 'fine'}).encode(),  # duplicate_key
      b'{"key": "bad", "text": "\xff\xfe"}',                # invalid_text
  ]
  random.Random(3).shuffle(lines)
  path = tmp_path / 'in' / 'part.jsonl'
  path.parent.mkdir()
  path.write_bytes(b'\n'.join(lines) + b'\n')
  figures, output = _run(tmp_path, str(path), tiny_model_dir)
  assert figures['dead_letters_by_reason'] == {
      'empty_text': 1, 'duplicate_key': 2, 'invalid_text': 1}
  dead = batch_io.read_jsonl(output + '_errors')
  assert {(d['key'], d['reason']) for d in dead} == {
      ('d1', 'empty_text'), ('d1', 'duplicate_key'), ('d2', 'duplicate_key'),
      (None, 'invalid_text')}
  keys_out = sorted(o['key'] for o in batch_io.read_jsonl(output))
  assert keys_out == sorted([r['key'] for r in good] + ['d2'])
  assert figures['inputs'] == len(lines) == len(keys_out) + len(dead)


def test_log_time_field_replays_the_records_own_times(tmp_path,
                                                       tiny_model_dir):
  # Every third record has its own time, one an unusable one (naive).
  rows = [dict(r, time=f'2026-01-{1 + i % 20:02d}T06:00:00+02:00')
          if i % 3 == 0 else r for i, r in enumerate(ROWS)]
  rows[3]['time'] = '2026-01-02T00:00:00'
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 2)
  figures, _ = _run(tmp_path, pattern, tiny_model_dir,
                    '--prediction_log', str(tmp_path / 'log'),
                    '--log_time_field', 'time')
  logged = {r['key']: r['time'] for r in batch_io.read_jsonl(
      str(tmp_path / 'log'))}
  assert len(logged) == len(rows)
  for i, row in enumerate(rows):
    if i % 3 == 0 and i != 3:
      assert logged[row['key']] == (
          f'2026-01-{1 + i % 20:02d}T04:00:00.000000Z')
  run_time = logged[rows[1]['key']]
  assert logged[rows[3]['key']][:13] == run_time[:13] != '2026-01-02T00'
  # Unusable: the naive one and the 40 records without a time.
  assert figures['log_time_unusable'] == 1 + 40


def test_log_time_field_needs_a_prediction_log(tmp_path, tiny_model_dir):
  with pytest.raises(launch.UsageError) as error:
    _run(tmp_path, batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', 1),
         tiny_model_dir, '--log_time_field', 'time')
  assert error.value.flag == '--log_time_field'
