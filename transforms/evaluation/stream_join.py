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
emitted unlabelled (counted, not lost). A label arriving after its key was
flushed finds no prediction and is a dead letter (`unmatched_label`).

What is held is counted as it changes, in three Beam counters that go up
when a row enters state and down when its key is flushed, so each one's
committed value is what all workers hold now: `keys_in_state`,
`predictions_in_state`, `labels_in_state` (namespace `evaluation`). They
cost an increment per row, never a scan of state, and a monitoring
dashboard reads them as gauges of the join's state
(benchmarks/evaluation_stream.py samples them).

The emitted rows carry their prediction's event time, so the windows of
metrics downstream hold each row where the batch job's calendar slices
would; they reach their window after it may have closed (a prediction at
the end of a window is flushed a lateness later), which the windowing
allows for (late panes refine the window's records).
"""
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
from transforms.evaluation.join import COMPARISON
from transforms.evaluation.join import JoinKey
from transforms.evaluation.rows import METRICS_NAMESPACE

PREDICTION, LABEL = 'p', 'l'
PREDICTIONS = BagStateSpec('predictions', PickleCoder())
LABELS = BagStateSpec('labels', PickleCoder())
FLUSH_AT = ReadModifyWriteStateSpec('flush_at', VarIntCoder())
FLUSH = TimerSpec('flush', TimeDomain.WATERMARK)


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

  def process(self, element, t=beam.DoFn.TimestampParam,
              predictions=beam.DoFn.StateParam(PREDICTIONS),
              labels=beam.DoFn.StateParam(LABELS),
              flush_at=beam.DoFn.StateParam(FLUSH_AT),
              flush=beam.DoFn.TimerParam(FLUSH)):
    _, (kind, value) = element
    (predictions if kind == PREDICTION else labels).add(value)
    self._held[kind].inc()
    fire = t.micros + self._lateness
    current = flush_at.read()
    if current is None:
      self._keys_held.inc()
    if current is None or (kind == PREDICTION and fire > current):
      flush_at.write(fire)
      flush.set(Timestamp(micros=fire))

  @on_timer(FLUSH)
  def on_flush(self, key=beam.DoFn.KeyParam,
               predictions=beam.DoFn.StateParam(PREDICTIONS),
               labels=beam.DoFn.StateParam(LABELS),
               flush_at=beam.DoFn.StateParam(FLUSH_AT)):
    grouped = {'predictions': list(predictions.read()),
               'labels': list(labels.read())}
    predictions.clear()
    labels.clear()
    flush_at.clear()
    self._keys_held.dec()
    for kind, name in ((PREDICTION, 'predictions'), (LABEL, 'labels')):
      if grouped[name]:
        self._held[kind].dec(len(grouped[name]))
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
