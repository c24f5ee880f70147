"""The pipelines that ship as Flex Templates: one entry per pipeline.

Everything else (metadata.json, the README options tables, the Cloud Build
config, the tests) is derived from these entries and from each pipeline's own
`build_parser()`, so adding a pipeline is one line here followed by
`python -m templates.generate`.
"""
import dataclasses
import importlib
import pathlib

TEMPLATES_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = TEMPLATES_DIR.parent


@dataclasses.dataclass(frozen=True)
class Template:
  """A pipeline module `pipelines.<pipeline>` published as a Flex Template.

  `param_types` overrides the paramType that flag naming conventions imply
  (see generate.param_type) for flags whose names do not say what they hold.
  """
  pipeline: str
  title: str
  streaming: bool = False
  param_types: tuple = ()

  @property
  def module(self):
    return f'pipelines.{self.pipeline}'

  def parser(self):
    return importlib.import_module(self.module).build_parser()

  @property
  def folder(self):
    return TEMPLATES_DIR / self.pipeline


TEMPLATES = (
    Template('batch_predict', 'Resilient keyed batch predictions',
             param_types=(('prediction_log', 'GCS_WRITE_FILE'),)),
    Template('moderate', 'Streaming comment moderation', streaming=True,
             param_types=(('alias_table', 'GCS_READ_FILE'),)),
    Template('evaluate', 'Continuous evaluation of a prediction log',
             param_types=(('predictions', 'GCS_READ_FILE'),
                          ('ground_truth', 'GCS_READ_FILE'),
                          ('output', 'GCS_WRITE_FOLDER'))),
    Template('two_phase', 'Two-phase (cascade) predictions',
             param_types=(('phase1_model', 'GCS_READ_FILE'),
                          ('phase2_input', 'TEXT'), ('phase2_output', 'TEXT'),
                          ('pending', 'GCS_WRITE_FILE'))),
)


def by_name(pipeline):
  for template in TEMPLATES:
    if template.pipeline == pipeline:
      return template
  raise KeyError(f'no template for pipeline {pipeline!r}; known: '
                 f'{[t.pipeline for t in TEMPLATES]}')
