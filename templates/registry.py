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
  (A flag whose name does not say what it holds declares its template
  type itself: pipelines.flags.Flag.template_type.)"""
  pipeline: str
  title: str
  streaming: bool = False

  @property
  def module(self):
    return f'pipelines.{self.pipeline}'

  def parser(self):
    return importlib.import_module(self.module).build_parser()

  @property
  def folder(self):
    return TEMPLATES_DIR / self.pipeline


TEMPLATES = (
    Template('batch_predict', 'Resilient keyed batch predictions'),
    Template('moderate', 'Streaming comment moderation', streaming=True),
    Template('evaluate', 'Continuous evaluation of a prediction log'),
    Template('two_phase', 'Two-phase (cascade) predictions'),
    Template('stream_predict', 'Streaming keyed predictions over Pub/Sub, '
             'with gated model refresh', streaming=True),
)


def by_name(pipeline):
  for template in TEMPLATES:
    if template.pipeline == pipeline:
      return template
  raise KeyError(f'no template for pipeline {pipeline!r}; known: '
                 f'{[t.pipeline for t in TEMPLATES]}')
