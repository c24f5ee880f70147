"""The model event record: one per decision a streaming job's gate takes on
a model version (pipelines.stream_predict, transforms.streaming.gate).

  {"model", "version", "event": "shadow" | "promoted" | "rejected",
   "live_version": the version serving when it was decided,
   "reason": str, "examples": messages both versions saw,
   "agreement", "live_error_rate", "shadow_error_rate",
   "live_p99_ms", "shadow_p99_ms": the gate's figures (null before any),
   "labelled", "live_accuracy", "shadow_accuracy": with a labels
     subscription, how many counted messages were labelled before the
     decision and each version's share of them right (null without labels),
   "decided_at": ISO-8601 UTC, "worker": the process that decided}

`shadow`: a new complete version was found and now predicts beside live;
`promoted`: it passed the gate and serves from now on; `rejected`: it failed
the gate, or could not be loaded or called (the reason says which), and the
live version stays. A table of events is partitioned on decided_at.
"""
from common.schema import Field
from common.schema import Shape

SHADOW = 'shadow'
PROMOTED = 'promoted'
REJECTED = 'rejected'
EVENTS = (SHADOW, PROMOTED, REJECTED)
PARTITION = 'decided_at'
FIGURES = ('examples', 'agreement', 'live_error_rate', 'shadow_error_rate',
           'live_p99_ms', 'shadow_p99_ms', 'labelled', 'live_accuracy',
           'shadow_accuracy')
SHAPE = Shape('model_event', (
    Field('model', 'string'),
    Field('version', 'string', required=True),
    Field('event', 'string', required=True,
          description='shadow, promoted or rejected'),
    Field('live_version', 'string'),
    Field('reason', 'string'),
    Field('examples', 'int'),
    Field('agreement', 'float'),
    Field('live_error_rate', 'float'),
    Field('shadow_error_rate', 'float'),
    Field('live_p99_ms', 'float'),
    Field('shadow_p99_ms', 'float'),
    Field('labelled', 'int',
          description='counted messages labelled before the decision'),
    Field('live_accuracy', 'float'),
    Field('shadow_accuracy', 'float'),
    Field(PARTITION, 'timestamp', required=True),
    Field('worker', 'string',
          description='the worker process whose examples decided'),
), partition=PARTITION, key_field='version')


def record(model, version, event, live_version, reason, figures, decided_at,
           worker):
  """One event; `figures` holds FIGURES (missing ones are null)."""
  if event not in EVENTS:
    raise ValueError(f'event must be one of {EVENTS}, got {event!r}')
  out = {'model': model, 'version': version, 'event': event,
         'live_version': live_version, 'reason': reason}
  for name in FIGURES:
    out[name] = (figures or {}).get(name)
  out[PARTITION] = decided_at
  out['worker'] = worker
  return out
