"""Builds a pipeline's Dataflow job offline: the real `run(argv)` with
DataflowRunner flags and --dry_run, stopped right after the job is built.

`--dry_run` makes the DataflowRunner build the full job (portable graph,
environments, Dataflow Job proto) without staging or submitting anything; the
fixture records what was built and ends the run there, so pipelines that do
more after `pipeline.run()` (summaries from metrics, reading outputs) need no
dry-run special case. The project id and bucket name must be valid-looking:
Beam rejects a 1-letter project or bucket before building anything.
"""
import dataclasses

import pytest
from apache_beam.runners.dataflow import dataflow_runner

PROJECT = 'test-project'
REGION = 'us-central1'
DRY_RUN_FLAGS = (
    '--runner', 'DataflowRunner', '--project', PROJECT, '--region', REGION,
    '--temp_location', 'gs://test-bucket/tmp', '--no_auth',
    '--sdk_location', 'container', '--dry_run', 'True')


@dataclasses.dataclass
class BuiltJob(Exception):
  """What the DataflowRunner built: the Beam graph and the Dataflow job."""
  proto_pipeline: object
  job: object

  @property
  def transform_names(self):
    return {t.unique_name
            for t in self.proto_pipeline.components.transforms.values()}

  @property
  def container_images(self):
    return {env.payload.decode('utf-8', 'replace')
            for env in self.proto_pipeline.components.environments.values()}


@pytest.fixture
def build_dataflow_job(monkeypatch):
  """`build_dataflow_job(run, argv)` -> BuiltJob for `run(argv + dry-run)`."""
  submit = dataflow_runner.DataflowRunner.run_pipeline

  def run_pipeline(self, pipeline, options, **kwargs):
    submit(self, pipeline, options, **kwargs)
    raise BuiltJob(self.proto_pipeline, self.job.proto)

  monkeypatch.setattr(
      dataflow_runner.DataflowRunner, 'run_pipeline', run_pipeline)

  def build(run, argv):
    try:
      run(list(argv) + list(DRY_RUN_FLAGS))
    except BuiltJob as built:
      return built
    raise AssertionError('run() returned without submitting to Dataflow')

  return build
