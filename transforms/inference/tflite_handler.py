"""The ModelHandler that runs a quantized .tflite text model in RunInference.

The TFLite counterpart of transforms/inference/signature_handler.py, for the cheap first phase
of a two-phase cascade: RunInference batches the records, loads the model once
per worker process (models.runtime.lite_predictor caches it, one LiteRT interpreter
per thread), and this class tokenizes one batch in Python and scores it with
one interpreter call. The result per record is the positive probability.

A failing batch is bisected until the failing record is isolated, exactly as
the SavedModel handler does: its batch mates still get scores and only that
record carries an `InferenceFailure`.
"""
from apache_beam.ml.inference.base import ModelHandler

from transforms.inference.signature_handler import predict_isolating_failures

DEFAULT_BATCH_SIZE = 512


class TFLiteTextModelHandler(ModelHandler):
  """RunInference handler: dict records in, a float score out.

  Args:
    tflite_path: the .tflite model (local or gs://); its tokenizer is the
      `.tokenizer.json` file beside it.
    text_field: the record field holding the text.
    model_version: recorded as PredictionResult.model_id.
    batch_size: records per interpreter call (fixed-size batches avoid
      re-allocating the interpreter's tensors).
  """

  def __init__(self, tflite_path, text_field='text', model_version=None,
               batch_size=DEFAULT_BATCH_SIZE, max_batch_duration_secs=None):
    super().__init__(min_batch_size=batch_size, max_batch_size=batch_size,
                     max_batch_duration_secs=max_batch_duration_secs)
    self._path = tflite_path
    self._field = text_field
    self._model_version = model_version or tflite_path.rsplit('/', 1)[-1]

  def load_model(self):
    from models.runtime import lite_predictor
    return lite_predictor.load(self._path)

  def run_inference(self, batch, model, inference_args=None):
    return predict_isolating_failures(
        list(batch), lambda records: self._score(records, model),
        self._model_version)

  def _score(self, batch, model):
    scores = model.predict_ids(
        model.tokenizer.encode([record[self._field] for record in batch]))
    return [float(score) for score in scores.tolist()]

  def get_num_bytes(self, batch):
    return sum(len(record[self._field]) for record in batch)

  def get_metrics_namespace(self):
    return 'phase1_inference'
