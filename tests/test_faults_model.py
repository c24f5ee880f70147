"""Corrupt or changing model files: a clear error at start, never a
half-loaded model serving (models.runtime.model_files)."""
import shutil

import pytest

from models.runtime import model_files
from models.runtime import predictor as predictor_lib
from pipelines import batch_predict
from pipelines import launch
from serving import __main__ as serving_main
from transforms.inference.signature_handler import SignatureModelHandler

VARIABLES = 'variables/variables.data-00000-of-00001'


@pytest.fixture
def truncated(tmp_path, tiny_model_dir):
  model = tmp_path / 'tiny' / '1'
  shutil.copytree(tiny_model_dir, model)
  data = model / VARIABLES
  data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
  return str(model)


@pytest.fixture
def two_versions(tmp_path, tiny_model_dir, poison_model_dir):
  """A folder caught mid-replacement: the new version's graph and
  fingerprint beside the old version's variables."""
  model = tmp_path / 'mixed' / '1'
  shutil.copytree(tiny_model_dir, model)
  for name in ('saved_model.pb', 'fingerprint.pb'):
    shutil.copy(f'{poison_model_dir}/{name}', model / name)
  return str(model)


def _batch_job(tmp_path, model_dir):
  (tmp_path / 'in.jsonl').write_text('{"key": "a", "text": "fine"}\n')
  return batch_predict.run([
      '--input', str(tmp_path / 'in.jsonl'), '--model_dir', model_dir,
      '--feature_map', 'reviews=text', '--output', str(tmp_path / 'out')])


def test_truncated_variables_stop_the_batch_job_before_it_runs(tmp_path,
                                                               truncated):
  with pytest.raises(launch.UsageError) as error:
    _batch_job(tmp_path, truncated)
  assert error.value.flag == '--model_dir'
  assert 'variables are truncated or damaged' in error.value.problem
  assert not list(tmp_path.glob('out*'))


def test_truncated_variables_stop_the_server_with_one_line(truncated,
                                                           capsys):
  assert serving_main.main(['--model_dir', truncated]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert 'cannot restore the model' in err and truncated in err


def test_a_half_replaced_folder_is_refused_everywhere(tmp_path, two_versions):
  with pytest.raises(model_files.ModelFilesError,
                     match='do not match the fingerprint'):
    predictor_lib.Predictor(two_versions)
  with pytest.raises(launch.UsageError, match='two versions'):
    _batch_job(tmp_path, two_versions)


def test_a_model_replaced_after_the_job_started_is_not_loaded(
    tmp_path, tiny_model_dir, plain_model_dir):
  model = tmp_path / 'model'
  shutil.copytree(tiny_model_dir, model)
  at_start = model_files.verify(str(model))
  shutil.rmtree(model)
  shutil.copytree(plain_model_dir, model)  # replaced in place
  handler = SignatureModelHandler(str(model), ['reviews'],
                                  fingerprint=at_start)
  with pytest.raises(model_files.ModelFilesError,
                     match='changed since the job started'):
    handler.load_model()
