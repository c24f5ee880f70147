"""The dead-letter side output: how every stage rejects an element.

Nothing is lost: a DoFn that cannot process an element yields it, complete and
with a reason, on the `DEAD_LETTER` side output instead of raising. Pipelines
flatten every stage's dead letters into one sink, so that for every run
inputs = outputs + dead letters, and count them by reason in Beam metrics.

The record's shape (the same in every pipeline) is common.records.dead_letter.
"""
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from common.records import dead_letter as dead_letter_records

DEAD_LETTER = 'dead_letter'
METRICS_NAMESPACE = 'dead_letter'


def reject(key, stage, reason, raw, error=None):
  """Returns the tagged output a DoFn yields to dead-letter an element.

  Also counts it under the `dead_letter` metrics namespace as `<reason>`,
  so the end-of-run summary can show dead letters by reason.
  """
  Metrics.counter(METRICS_NAMESPACE, reason).inc()
  return beam.pvalue.TaggedOutput(
      DEAD_LETTER, dead_letter_records.record(key, stage, reason, raw, error))


class Routed(typing.NamedTuple):
  """A stage's two outputs: what continues on the main path, what leaves."""
  main: beam.PCollection
  dead_letter: beam.PCollection


class RoutedParDo(beam.PTransform):
  """ParDo of a DoFn that may `reject` elements; returns `Routed`."""

  def __init__(self, fn, *args, **kwargs):
    super().__init__()
    self._fn, self._args, self._kwargs = fn, args, kwargs

  def default_label(self):
    return self._fn.__class__.__name__.lstrip('_')

  def expand(self, pcoll):
    outputs = pcoll | beam.ParDo(
        self._fn, *self._args, **self._kwargs).with_outputs(
            DEAD_LETTER, main='main')
    return Routed(outputs.main, outputs[DEAD_LETTER])


def merge(routed_parts, label):
  """Flattens several `Routed` into one (e.g. one per input pattern)."""
  parts = list(routed_parts)
  if len(parts) == 1:
    return parts[0]
  return Routed(
      [p.main for p in parts] | f'{label} main' >> beam.Flatten(),
      [p.dead_letter for p in parts] | f'{label} dead' >> beam.Flatten())
