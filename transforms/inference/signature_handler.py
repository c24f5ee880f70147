"""The ModelHandler that runs a SavedModel signature inside Beam's RunInference.

Beam's stock TensorFlow handler cannot load our SavedModels under Keras 3 (and
cannot call a signature-only SavedModel), so this handler plugs the project's
prediction library (`models.runtime.predictor`) into Beam's RunInference machinery:
RunInference batches elements, loads the model once per worker process through
its shared handle and shares it across threads; this class only maps record
fields to signature inputs and calls one signature per batch.

A batch that fails is bisected until the failing element is isolated: the good
elements of that batch still get predictions and only the bad one carries an
`InferenceFailure`, which the output stage routes to the dead letter.
"""
import copy
import typing
import uuid

from apache_beam.ml.inference.base import ModelHandler
from apache_beam.ml.inference.base import PredictionResult

from models.runtime.signatures import DEFAULT_SIGNATURE

DEFAULT_BATCH_SIZE = 256


class InferenceFailure(typing.NamedTuple):
  """Stands in for a prediction when the model failed on this element."""
  error: str


def predict_isolating_failures(batch, predict, model_version):
  """PredictionResults for `batch`, one per record, whatever fails.

  `predict(records)` returns one inference per record. A batch that raises
  is bisected until the failing record is alone: it gets an InferenceFailure,
  the rest of its batch still gets predictions. Every handler uses this, so
  one bad record never costs its batch mates their predictions.
  """
  try:
    inferences = predict(batch)
  except Exception as e:  # pylint: disable=broad-except
    if len(batch) == 1:
      failure = InferenceFailure(f'{type(e).__name__}: {e}'[:2000])
      return [PredictionResult(batch[0], failure, model_version)]
    middle = len(batch) // 2
    return (predict_isolating_failures(batch[:middle], predict, model_version)
            + predict_isolating_failures(batch[middle:], predict,
                                         model_version))
  return [PredictionResult(record, inference, model_version)
          for record, inference in zip(batch, inferences)]


class SignatureModelHandler(ModelHandler):
  """RunInference handler: dict records in, {output name: value} out.

  Args:
    model_dir: SavedModel directory, gs:// path or TF-Hub handle.
    input_names: the signature's input names.
    signature: the signature to call.
    feature_map: {input name: record field}; unmapped inputs read the field
      of the same name.
    model_version: recorded as PredictionResult.model_id on every result.
    batch_size: the largest batch; also the smallest unless min_batch_size
      is given (fixed-size batches are fastest for a SavedModel).
    max_batch_duration_secs: streaming: emit a partial batch after this long.
    fingerprint: the model files' fingerprint when the job was checked
      (models.runtime.model_files); a worker finding other files refuses
      to load them.
    share_across_processes: one model per machine, served to every worker
      process of the machine (Beam's `large_model`: RunInference then loads
      it through multi_process_shared and calls it through a proxy), rather
      than one copy per process.
  """

  def __init__(self, model_dir, input_names, signature=DEFAULT_SIGNATURE,
               feature_map=None, model_version=None,
               batch_size=DEFAULT_BATCH_SIZE, min_batch_size=None,
               max_batch_duration_secs=None, fingerprint=None,
               share_across_processes=False):
    super().__init__(
        min_batch_size=min_batch_size or batch_size,
        max_batch_size=batch_size,
        max_batch_duration_secs=max_batch_duration_secs,
        large_model=share_across_processes)
    feature_map = feature_map or {}
    self._model_dir = model_dir
    self._signature = signature
    self._fields = [(name, feature_map.get(name, name)) for name in input_names]
    self._model_version = model_version or model_dir
    self._fingerprint = fingerprint
    self._model_tag = uuid.uuid4().hex

  @property
  def model_tag(self):
    """The tag RunInference shares the loaded model under: every
    RunInference step given this handler (a job's main and duplicate-key
    paths) then serves from one model, in whichever process hosts it."""
    return self._model_tag

  @property
  def model_dir(self):
    return self._model_dir

  @property
  def model_version(self):
    return self._model_version

  def for_version(self, model_dir, model_version, fingerprint):
    """The same handler (signature, fields, batching) for another version
    of the model: what a streaming job's gate loads beside the live one."""
    other = copy.copy(self)
    other._model_dir = model_dir
    other._model_version = model_version
    other._fingerprint = fingerprint
    other._model_tag = uuid.uuid4().hex
    return other

  def load_model(self):
    from models.runtime import predictor
    return predictor.load(self._model_dir, self._fingerprint)

  def run_inference(self, batch, model, inference_args=None):
    return predict_isolating_failures(
        list(batch), lambda records: self._predict(records, model),
        self._model_version)

  def _predict(self, batch, model):
    outputs = model.predict_columns(
        {name: [record[field] for record in batch]
         for name, field in self._fields},
        self._signature)
    names = list(outputs)
    return [dict(zip(names, values)) for values in zip(*outputs.values())]

  def get_num_bytes(self, batch):
    """Bytes of the model inputs (Beam's default pickles the whole batch)."""
    total = 0
    for record in batch:
      for _, field in self._fields:
        value = record[field]
        total += len(value) if isinstance(value, (str, bytes)) else 8
    return total

  def get_metrics_namespace(self):
    return 'inference'
