"""Each pipeline's Dataflow job builds offline, as `--runner DataflowRunner`
would submit it (with --setup_file, or with the template image as the SDK
container), and holds the stages the pipeline promises."""
import json

import pytest

from pipelines import batch_predict
from harness.dataflow import build_dataflow_job  # noqa: F401
from tests.tiny_two_phase import tiny_phase1  # noqa: F401

IMAGE = 'us-central1-docker.pkg.dev/test-project/resilient-serving/{}:v1'
DEFAULT_WORKER_IMAGE = 'gcr.io/cloud-dataflow/v1beta3/beam_python3.11_sdk:'


@pytest.fixture
def batch_predict_argv(tmp_path, tiny_model_dir):
  """Local inputs and model: validate() lists inputs and reads the model's
  signatures while constructing the job, and gs:// is out of reach here."""
  inputs = tmp_path / 'in'
  inputs.mkdir()
  (inputs / 'part-0.jsonl').write_text(
      json.dumps({'key': 'a', 'text': 'great film'}) + '\n')
  return ['--input', str(inputs / '*.jsonl'), '--model_dir', tiny_model_dir,
          '--feature_map', 'reviews=text',
          '--output', 'gs://test-bucket/out/predictions']


KEYED = 'Keyed input/'
BATCH_PREDICT_STAGES = {
    KEYED + 'Read', KEYED + 'Read keys', KEYED + 'Find duplicate keys',
    KEYED + 'Key and validate', KEYED + 'Deduplicate keys',
    KEYED + 'Validate kept duplicates', 'Predict',
    'Predict/Infer/RunInference', 'Predict/Format', 'Predict kept duplicates',
    'Write predictions', 'All dead letters', 'Write dead letters'}

DUPLICATE_STAGES = {
    KEYED + 'Read keys', KEYED + 'Find duplicate keys',
    KEYED + 'Deduplicate keys', KEYED + 'Validate kept duplicates',
    'Predict kept duplicates'}


def test_batch_predict_job_with_setup_file(
    build_dataflow_job, batch_predict_argv):
  built = build_dataflow_job(batch_predict.run, batch_predict_argv + [
      '--setup_file', './setup.py', '--job_name', 'batch-predict-20261125'])
  assert BATCH_PREDICT_STAGES <= built.transform_names
  assert any(n.startswith('Predict/Infer/RunInference/')
             for n in built.transform_names)
  # Distributed runners run a worker per core: model calls stay in the
  # worker thread, nothing awaits them.
  assert 'Predict/Infer/Await results' not in built.transform_names
  # On Dataflow duplicates are found per key (a combiner over keys; memory
  # bounded by one key's records), not in the local runners' one Counter or
  # hash buckets.
  assert KEYED + 'Find duplicate keys/Count per key' in built.transform_names
  assert KEYED + 'Find duplicate keys/Count keys' not in built.transform_names
  assert KEYED + 'Deduplicate keys/As lists' in built.transform_names
  assert KEYED + 'Deduplicate keys/Bucket keys' not in built.transform_names
  assert built.job.name == 'batch-predict-20261125'
  assert built.job.type_.name == 'JOB_TYPE_BATCH'
  [image] = built.container_images
  assert DEFAULT_WORKER_IMAGE in image


def test_batch_predict_job_on_the_template_image(
    build_dataflow_job, batch_predict_argv):
  image = IMAGE.format('batch_predict')
  built = build_dataflow_job(batch_predict.run, batch_predict_argv + [
      '--sdk_container_image', image, '--allow_duplicate_keys=true'])
  assert image in ''.join(built.container_images)
  # The switch, passed the way a Flex Template passes it, took effect.
  assert BATCH_PREDICT_STAGES - DUPLICATE_STAGES <= built.transform_names
  assert not DUPLICATE_STAGES & built.transform_names


def test_moderate_streams_over_pubsub_on_dataflow(build_dataflow_job):
  from pipelines import moderate
  topics = 'projects/test-project/topics/'
  built = build_dataflow_job(moderate.run, [
      '--input_subscription', 'projects/test-project/subscriptions/comments',
      '--output_topic', topics + 'decisions',
      '--dead_letter_topic', topics + 'moderation-dead-letters',
      '--sdk_container_image', IMAGE.format('moderate')])
  assert built.job.type_.name == 'JOB_TYPE_STREAMING'
  assert {'ReadPubSub/Read', 'Entities', 'Moderate/DecideInEventTimeOrder',
          'WriteDecisions', 'WriteDeadLetters'} <= built.transform_names
  assert IMAGE.format('moderate') in ''.join(built.container_images)


def test_stream_predict_streams_over_pubsub_on_dataflow(
    build_dataflow_job, tiny_model_dir):
  from pipelines import stream_predict
  topics = 'projects/test-project/topics/'
  versions = str(tiny_model_dir).rsplit('/', 1)[0] + '/*'
  built = build_dataflow_job(stream_predict.run, [
      '--input_subscription', 'projects/test-project/subscriptions/requests',
      '--model_dir', tiny_model_dir, '--feature_map', 'reviews=text',
      '--key_attribute', 'request_id',
      '--output_topic', topics + 'predictions',
      '--output_table', 'test-project:serving.predictions',
      '--dead_letter_topic', topics + 'prediction-dead-letters',
      '--prediction_log', 'gs://test-bucket/log/predictions',
      '--watch_models', versions,
      '--model_events_topic', topics + 'model-events',
      '--labels_subscription', 'projects/test-project/subscriptions/labels',
      '--sdk_container_image', IMAGE.format('stream_predict')])
  assert built.job.type_.name == 'JOB_TYPE_STREAMING'
  assert {'ReadPubSub/Read', 'Parse messages', 'Drop repeated keys',
          'Predict/Batch', 'Predict/Gated inference', 'Predict/Format',
          'Publish predictions', 'Write predictions table',
          'Publish dead letters', 'Write prediction log',
          'Publish model events', 'ReadLabels/Read', 'Parse labels',
          'Predict/Join labels'} <= built.transform_names
  # Windowed files: Beam's windowed text sink, never the batch sink's
  # stale-shard clean-up (a streaming job has no "end" to clean after).
  assert not any('Remove stale shards' in n for n in built.transform_names)
  assert IMAGE.format('stream_predict') in ''.join(built.container_images)


def test_stream_predict_without_watching_runs_beams_runinference(
    build_dataflow_job, tiny_model_dir):
  from pipelines import stream_predict
  topics = 'projects/test-project/topics/'
  built = build_dataflow_job(stream_predict.run, [
      '--input_topic', topics + 'requests',
      '--model_dir', tiny_model_dir, '--feature_map', 'reviews=text',
      '--output_topic', topics + 'predictions',
      '--dead_letter_topic', topics + 'prediction-dead-letters',
      '--dedup_window', '0'])
  assert 'Predict/RunInference' in built.transform_names
  assert 'Drop repeated keys' not in built.transform_names


def test_evaluate_job_builds(build_dataflow_job, tmp_path):
  from pipelines import evaluate
  predictions = tmp_path / 'predictions.jsonl'
  predictions.write_text(json.dumps({
      'key': 'a', 'model_version': 'sentiment/1', 'predicted_at':
      '2026-11-25T00:00:00+00:00',
      'predictions': {'positive_review_probability': 0.9}}) + '\n')
  labels = tmp_path / 'labels.jsonl'
  labels.write_text(json.dumps({
      'key': 'a', 'groundtruth': 'positive',
      'labeled_at': '2026-11-25T01:00:00+00:00'}) + '\n')
  built = build_dataflow_job(evaluate.run, [
      '--predictions', str(predictions), '--ground_truth', str(labels),
      '--output', 'gs://test-bucket/evaluation', '--setup_file', './setup.py'])
  assert built.job.type_.name == 'JOB_TYPE_BATCH'
  assert {'ReadPredictions0', 'ReadGroundTruth0', 'Evaluate', 'Writeslices',
          'Writealerts', 'Writedead_letters'} <= built.transform_names


def test_evaluate_streaming_job_builds(build_dataflow_job, tmp_path):
  from common import feature_stats
  from pipelines import evaluate
  baseline = tmp_path / 'baseline_stats.json'
  baseline.write_text(feature_stats.dumps(feature_stats.build_baseline(
      [{'p': i / 100} for i in range(100)], {'p'}, None, 'test')))
  built = build_dataflow_job(evaluate.run, [
      '--predictions_subscription', 'projects/test-project/subscriptions/log',
      '--ground_truth_subscription',
      'projects/test-project/subscriptions/labels',
      '--metrics_topic', 'projects/test-project/topics/metrics',
      '--alert_topic', 'projects/test-project/topics/alerts',
      '--baseline', str(baseline), '--drift', 'psi>0.2',
      '--setup_file', './setup.py'])
  assert built.job.type_.name == 'JOB_TYPE_STREAMING'
  names = ' '.join(sorted(built.transform_names))
  for part in ('ReadPredictions', 'ReadGroundTruth', 'JoinInEventTime',
               'MetricWindows', 'Drift', 'PublishMetrics', 'Publishalerts'):
    assert part in names, (part, names)


def test_two_phase_job_builds(build_dataflow_job, tmp_path, tiny_phase1,
                              tiny_model_dir):
  from pipelines import two_phase
  inputs = tmp_path / 'in.jsonl'
  inputs.write_text(json.dumps({'key': 'a', 'text': 'great film'}) + '\n')
  built = build_dataflow_job(two_phase.run, [
      '--input', str(inputs), '--phase1_model', tiny_phase1[0],
      '--forward', 'uncertain:0.3,0.7', '--phase2_model_dir', tiny_model_dir,
      '--output', 'gs://test-bucket/two_phase/decisions',
      '--sdk_container_image', IMAGE.format('two_phase')])
  names = ' '.join(sorted(built.transform_names))
  assert built.job.type_.name == 'JOB_TYPE_BATCH'
  assert 'RunInference' in names, names
  assert IMAGE.format('two_phase') in ''.join(built.container_images)
