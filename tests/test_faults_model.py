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


def _export_scaler(export_dir, weight):
  """serving_default(reviews: string) -> weight * length: versions differ
  in their variable only, as retrained models do."""
  import tensorflow as tf

  class Scaler(tf.Module):

    def __init__(self):
      super().__init__()
      self.weight = tf.Variable(weight)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name='reviews')])
    def serve(self, reviews):
      length = tf.cast(tf.strings.length(reviews), tf.float32)
      return {'score': tf.reshape(length * self.weight, [-1, 1])}

  module = Scaler()
  tf.saved_model.save(module, str(export_dir),
                      signatures={'serving_default': module.serve})
  return export_dir


@pytest.fixture
def two_versions(tmp_path):
  """A folder caught mid-replacement: version 1's graph and fingerprint
  beside version 2's variables."""
  one = _export_scaler(tmp_path / 'v1', 1.0)
  two = _export_scaler(tmp_path / 'v2', 2.0)
  model = tmp_path / 'mixed' / '1'
  shutil.copytree(one, model)
  shutil.rmtree(model / 'variables')
  shutil.copytree(two / 'variables', model / 'variables')
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
  import tensorflow as tf
  # TensorFlow alone serves the mix without a word: version 1's graph with
  # version 2's weight.
  mixed = tf.saved_model.load(two_versions).signatures['serving_default']
  assert mixed(reviews=tf.constant(['abc']))['score'].numpy()[0, 0] == 6.0
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
