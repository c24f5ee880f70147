"""The batch job killed mid-run (SIGKILL) and rerun with the same flags.

The rerun must leave exactly what an uninterrupted run leaves: the same keys
and predictions, the same dead letters, shards of one count only and no
temporary folders, whatever the killed run had half-written. (More points
and repetitions: `make faults`.)
"""
import os

import pytest

from harness import kill_points
from harness.job_outputs import batch_outputs
from harness.job_outputs import differing_keys
from pipelines import batch_predict
from tests import batch_io

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


def test_killed_while_finalizing_then_rerun_leaves_one_clean_output(
    tmp_path, inputs, tiny_model_dir, uninterrupted):
  output = str(tmp_path / 'predictions')
  flags = _flags(inputs, tiny_model_dir, output, '--num_shards', '3')
  status = kill_points.run('finalize', 1, ['-m', 'pipelines.batch_predict',
                                           *flags], tmp_path / 'killed.log')
  assert status == -9, (tmp_path / 'killed.log').read_text()[-2000:]
  # What the kill left: the shards renamed so far, the rest still in
  # Beam's temporary folder (docs/reliability.md: wait for the job's exit).
  assert batch_outputs(output).temporary_folders

  batch_predict.run(flags)
  rerun = batch_outputs(output)
  assert not differing_keys(rerun.predictions, uninterrupted.predictions)
  assert rerun.duplicates == 0
  assert rerun.dead_letters == uninterrupted.dead_letters
  assert rerun.shard_counts == {'predictions': {3}, 'dead letters': {1}}
  assert not rerun.temporary_folders


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
