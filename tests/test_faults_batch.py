"""The batch job killed mid-run (SIGKILL) and rerun with the same flags.

The rerun must leave exactly what an uninterrupted run leaves: the same keys
and predictions, the same dead letters, shards of one count only and no
temporary folders, whatever the killed run had half-written. (More points
and repetitions: `make faults`.)
"""
import os

import pytest

from harness import kill_points
from harness.fault_figures import record
from harness.job_outputs import batch_outputs
from harness.job_outputs import differing_keys
from pipelines import batch_predict
from tests import batch_io

WHILE = {'read': 'reading', 'infer': 'inferring', 'finalize': 'finalizing'}
ROWS = [{'key': f'k{i:03d}', 'text': f'a film numbered {i}'}
        for i in range(120)]
BAD = ['{"key": "broken', '{"text": "no key"}']


def _flags(inputs, model_dir, output, *extra):
  return ['--input', inputs, '--model_dir', model_dir, '--output', output,
          '--feature_map', 'reviews=text', '--batch_size', '8',
          '--runner', 'FnApiRunner', *extra]


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  directory = tmp_path_factory.mktemp('kill-inputs')
  pattern = batch_io.write_shards(directory, ROWS, 'jsonl', num_shards=3)
  with open(directory / 'part-bad.jsonl', 'w') as f:
    f.write('\n'.join(BAD) + '\n')
  return str(directory / 'part-*.jsonl')


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, inputs, tiny_model_dir):
  output = str(tmp_path_factory.mktemp('uninterrupted') / 'predictions')
  figures = batch_predict.run(_flags(inputs, tiny_model_dir, output))
  assert figures['reconciled'] and figures['dead_letters'] == len(BAD)
  return batch_outputs(output)


def _kill_and_rerun(tmp_path, flags, point, after_calls, uninterrupted):
  """Kills the job at `point`, reruns it; checks and records the rerun's
  outputs against the uninterrupted run's; returns what the kill left."""
  output = flags[flags.index('--output') + 1]
  status = kill_points.run(point, after_calls, ['-m', 'pipelines.batch_predict',
                                                *flags], tmp_path / 'killed.log')
  assert status == -9, (tmp_path / 'killed.log').read_text()[-2000:]
  left = batch_outputs(output)
  batch_predict.run(flags)
  rerun = batch_outputs(output)
  wrong = differing_keys(rerun.predictions, uninterrupted.predictions)
  record(f'batch_predict SIGKILL while {WHILE[point]}, then rerun', {
      'inputs': len(ROWS) + len(BAD), 'outputs': len(rerun.predictions),
      'dead_lettered': len(rerun.dead_letters), 'lost': len(wrong),
      'duplicates': rerun.duplicates,
      'visible_after_kill': left.prediction_lines,
      'temporary_folders_after_kill': len(left.temporary_folders)})
  assert not wrong
  assert rerun.duplicates == 0
  assert rerun.dead_letters == uninterrupted.dead_letters
  assert not rerun.temporary_folders
  return left, rerun


def test_killed_while_finalizing_then_rerun_leaves_one_clean_output(
    tmp_path, inputs, tiny_model_dir, uninterrupted):
  flags = _flags(inputs, tiny_model_dir, str(tmp_path / 'predictions'),
                 '--num_shards', '3')
  left, rerun = _kill_and_rerun(tmp_path, flags, 'finalize', 1,
                                uninterrupted)
  # What the kill left: the shards renamed so far, the rest still in
  # Beam's temporary folder (docs/reliability.md: wait for the job's exit).
  assert left.temporary_folders
  assert rerun.shard_counts == {'predictions': {3}, 'dead letters': {1}}


@pytest.mark.faults
@pytest.mark.parametrize('point, after_calls', [
    ('read', 1), ('read', 3), ('infer', 2), ('infer', 9), ('finalize', 2),
    ('finalize', 3)])
def test_killed_at_every_point_then_rerun(tmp_path, inputs, tiny_model_dir,
                                          uninterrupted, point, after_calls):
  # Three prediction shards and one of dead letters: four renames.
  flags = _flags(inputs, tiny_model_dir, str(tmp_path / 'predictions'),
                 '--num_shards', '3')
  _kill_and_rerun(tmp_path, flags, point, after_calls, uninterrupted)


def test_a_rerun_with_another_shard_count_leaves_no_stale_shards(
    tmp_path, inputs, tiny_model_dir, uninterrupted):
  output = str(tmp_path / 'predictions')
  batch_predict.run(_flags(inputs, tiny_model_dir, output, '--num_shards',
                           '4'))
  batch_predict.run(_flags(inputs, tiny_model_dir, output, '--num_shards',
                           '2'))
  rerun = batch_outputs(output)
  assert not differing_keys(rerun.predictions, uninterrupted.predictions)
  assert rerun.duplicates == 0
  assert rerun.shard_counts['predictions'] == {2}
  assert sorted(os.listdir(tmp_path)) == [
      'predictions-00000-of-00002.jsonl', 'predictions-00001-of-00002.jsonl',
      'predictions_errors-00000-of-00001.jsonl']
