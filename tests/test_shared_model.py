"""One model per machine (--share_model): which runs share it, and a
two-process run that serves every record from the one model."""
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from models.runtime import predictor
from pipelines import batch_predict
from pipelines import launch
from pipelines import local_runner
from pipelines import model
from tests import batch_io

TWO_PROCESSES = ('--direct_num_workers=2',
                 '--direct_running_mode=multi_processing')
ROWS = [{'key': f'k{i:03d}', 'text': f'review number {i} was great'}
        for i in range(80)]


def _shares(share_model, *beam_args):
  args = batch_predict.build_parser().parse_args(
      ['--input', 'x', '--model_dir', 'm', '--output', 'o',
       '--share_model', share_model])
  return model.shares_model(
      args, local_runner.pick_runner(PipelineOptions(list(beam_args))))


def test_auto_shares_where_a_machine_runs_several_worker_processes():
  assert _shares('auto', *TWO_PROCESSES)
  assert _shares('auto', '--runner=DataflowRunner')
  assert not _shares('auto', '--runner=DataflowRunner',
                     '--experiments=no_use_multiple_sdk_containers')
  assert not _shares('auto')                            # one worker
  assert not _shares('auto', '--direct_num_workers=2')  # threads, one process
  assert not _shares('auto', '--direct_running_mode=multi_processing')
  assert _shares('true')
  assert not _shares('false', *TWO_PROCESSES)


def _run_two_processes(tmp_path, tiny_model_dir, *extra):
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', num_shards=4)
  output = str(tmp_path / 'out' / 'predictions')
  job, result, _ = launch.run_batch_job(
      ['--input', pattern, '--model_dir', str(tiny_model_dir),
       '--output', output, '--feature_map', 'reviews=text',
       '--batch_size', '8', '--runner', 'FnApiRunner', *TWO_PROCESSES,
       *extra],
      batch_predict.build_parser(), batch_predict.FLAGS, batch_predict.Job,
      batch_predict.build)
  loads = result.metrics().query(MetricsFilter().with_name(
      'load_model_latency_milli_secs'))['distributions']
  workers_loading = sum(d.committed.count for d in loads if d.committed)
  return job, batch_io.read_jsonl(output), workers_loading


@pytest.mark.parametrize('share, loaded_in_workers', [
    ('auto', lambda n: n == 0),   # served by the launcher, no worker loads
    ('false', lambda n: n >= 1),  # a copy per worker process that ran
])
def test_two_worker_processes_predict_every_record_once(
    tmp_path, tiny_model_dir, share, loaded_in_workers):
  job, rows, workers_loading = _run_two_processes(
      tmp_path, tiny_model_dir, f'--share_model={share}')
  assert job.handler.share_model_across_processes() == (share == 'auto')
  assert loaded_in_workers(workers_loading), workers_loading
  expected = predictor.load(str(tiny_model_dir)).predict(
      [r['text'] for r in ROWS])
  assert len(rows) == len(ROWS)  # each key once
  got = {r['key']: r['predictions']['positive_review_probability']
         for r in rows}
  assert got == pytest.approx({
      r['key']: e['positive_review_probability']
      for r, e in zip(ROWS, expected)})
