"""The dead-letter record and the side-output convention shared by every stage.

Nothing is lost: a DoFn that cannot process an element yields it, complete and
with a reason, on the `DEAD_LETTER` side output instead of raising. Pipelines
flatten every stage's dead letters into one sink, so that for every run
inputs = outputs + dead letters, and count them by reason in Beam metrics.

Shape (the same in every pipeline):
  {"key": str|None, "stage": str, "reason": str, "raw": <original record>,
   "error": str (optional, human detail)}
"""
import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.json_safe import json_safe

DEAD_LETTER = 'dead_letter'
METRICS_NAMESPACE = 'dead_letter'


def dead_letter_record(key, stage, reason, raw, error=None):
  """Builds one dead-letter record; `raw` is made JSON-safe here, once."""
  record = {
      'key': None if key is None else str(key),
      'stage': stage,
      'reason': reason,
      'raw': json_safe(raw),
  }
  if error:
    record['error'] = str(error)
  return record


def reject(key, stage, reason, raw, error=None):
  """Returns the tagged output a DoFn yields to dead-letter an element.

  Also counts it under the `dead_letter` metrics namespace as `<reason>`,
  so the end-of-run summary can show dead letters by reason.
  """
  Metrics.counter(METRICS_NAMESPACE, reason).inc()
  return beam.pvalue.TaggedOutput(
      DEAD_LETTER, dead_letter_record(key, stage, reason, raw, error))
