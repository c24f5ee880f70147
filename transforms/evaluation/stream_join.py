"""The streaming form of the join: predictions and labels by key, in event
time, with state and timers, and bounded state.

Per key, predictions and labels are buffered in state; one event-time timer
fires when the watermark passes the key's latest prediction time plus the
label lateness (--label_lateness; a label that comes first sets it at its
own time plus the lateness), and the buffered rows are joined exactly
as the batch join does (transforms/evaluation/join.py's JoinKey: latest label
wins, reruns superseded, unmatched labels are dead letters), then the key's
state is cleared. So a prediction is held until its label comes or the
lateness horizon passes, never longer: one that got no label by then is
emitted unlabelled (counted, not lost).

A label arriving after its key was flushed is a dead letter. To say why,
a flushed key keeps a tombstone (`joined_at`: one integer, the flush time)
for one more lateness: a label meeting it is `late_label` at once, naming
when the key was joined; a label no prediction ever had, or one later than
that, is flushed alone and is `unmatched_label`, as in the batch join. The
tombstone is the price of the distinction: one small value per key for a
lateness, against a key's buffered rows (docs/evaluation.md has the
figures).

What is held is counted as it changes, in Beam counters that go up when a
row or tombstone enters state and down when it leaves, so each one's
committed value is what all workers hold now: `keys_in_state` (keys with
buffered rows), `predictions_in_state`, `labels_in_state`,
`tombstones_in_state` (namespace `evaluation`). They cost an increment per
row, never a scan of state, and a monitoring dashboard reads them as gauges
of the join's state (benchmarks/evaluation_stream.py samples them).

The emitted rows carry their prediction's event time, so the windows of
metrics downstream hold each row where the batch job's calendar slices
would; they reach their window after it may have closed (a prediction at
the end of a window is flushed a lateness later), which the windowing
allows for (late panes refine the window's records).
"""
import datetime
import json

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import Timestamp

from transforms.dead_letter import DEAD_LETTER
from transforms.dead_letter import reject
from transforms.evaluation.join import COMPARISON
from transforms.evaluation.join import JoinKey
from transforms.evaluation.rows import METRICS_NAMESPACE

PREDICTION, LABEL = 'p', 'l'
PREDICTIONS = BagStateSpec('predictions', PickleCoder())
LABELS = BagStateSpec('labels', PickleCoder())
FLUSH_AT = ReadModifyWriteStateSpec('flush_at', VarIntCoder())
JOINED_AT = ReadModifyWriteStateSpec('joined_at', VarIntCoder())
FLUSH = TimerSpec('flush', TimeDomain.WATERMARK)


def _iso(micros):
  return datetime.datetime.fromtimestamp(
      micros / 1e6, datetime.timezone.utc).isoformat()


class JoinInEventTime(beam.DoFn):
  """(key, (PREDICTION | LABEL, parsed tuple)) -> the batch join's outputs,
  once per key and flush."""

  def __init__(self, config, lateness_s):
    self._join = JoinKey(config)
    self._lateness = int(lateness_s * 1_000_000)
    counter = lambda name: Metrics.counter(METRICS_NAMESPACE, name)
    self._keys_held = counter('keys_in_state')
    self._held = {PREDICTION: counter('predictions_in_state'),
                  LABEL: counter('labels_in_state')}
    self._tombstones = counter('tombstones_in_state')

  def process(self, element, t=beam.DoFn.TimestampParam,
              predictions=beam.DoFn.StateParam(PREDICTIONS),
              labels=beam.DoFn.StateParam(LABELS),
              flush_at=beam.DoFn.StateParam(FLUSH_AT),
              joined_at=beam.DoFn.StateParam(JOINED_AT),
              flush=beam.DoFn.TimerParam(FLUSH)):
    key, (kind, value) = element
    current = flush_at.read()
    if current is None and kind == LABEL:
      joined = joined_at.read()
      if joined is not None:
        yield reject(key, 'join', 'late_label', json.loads(value[2]),
                     f'its key\'s predictions were joined at {_iso(joined)}, '
                     'the label lateness after the latest of them')
        return
    (predictions if kind == PREDICTION else labels).add(value)
    self._held[kind].inc()
    fire = t.micros + self._lateness
    if current is None:
      self._keys_held.inc()
    if current is None or (kind == PREDICTION and fire > current):
      flush_at.write(fire)
      flush.set(Timestamp(micros=fire))

  @on_timer(FLUSH)
  def on_flush(self, key=beam.DoFn.KeyParam,
               predictions=beam.DoFn.StateParam(PREDICTIONS),
               labels=beam.DoFn.StateParam(LABELS),
               flush_at=beam.DoFn.StateParam(FLUSH_AT),
               joined_at=beam.DoFn.StateParam(JOINED_AT),
               flush=beam.DoFn.TimerParam(FLUSH)):
    fire = flush_at.read()
    if fire is None:  # the tombstone's lateness has passed
      joined_at.clear()
      self._tombstones.dec()
      return
    grouped = {'predictions': list(predictions.read()),
               'labels': list(labels.read())}
    predictions.clear()
    labels.clear()
    flush_at.clear()
    self._keys_held.dec()
    for kind, name in ((PREDICTION, 'predictions'), (LABEL, 'labels')):
      if grouped[name]:
        self._held[kind].dec(len(grouped[name]))
    if grouped['predictions']:
      if joined_at.read() is None:
        self._tombstones.inc()
      joined_at.write(fire)
      flush.set(Timestamp(micros=fire + self._lateness))
    for out in self._join.process((key, grouped)):
      if isinstance(out, beam.pvalue.TaggedOutput):
        yield out
      else:
        mv, row = out
        yield beam.window.TimestampedValue((mv, row), row[0])


class JoinLabelsInEventTime(beam.PTransform):
  """(predictions, labels) keyed PCollections, timestamped at their event
  times -> the outputs of join.JoinLabels: main ((model, version), scored
  row, timestamped at the prediction's time), 'comparison', 'dead_letter'."""

  def __init__(self, config, lateness_s):
    super().__init__()
    self._config = config
    self._lateness = lateness_s

  def expand(self, inputs):
    predictions, labels = inputs
    tagged = (
        (predictions | 'TagPredictions' >> beam.Map(
            lambda kv: (kv[0], (PREDICTION, kv[1]))),
         labels | 'TagLabels' >> beam.Map(lambda kv: (kv[0], (LABEL, kv[1]))))
        | 'Both' >> beam.Flatten())
    return tagged | 'JoinInEventTime' >> beam.ParDo(JoinInEventTime(
        self._config, self._lateness)).with_outputs(
            COMPARISON, DEAD_LETTER, main='scored')
