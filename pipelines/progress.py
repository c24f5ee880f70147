"""Progress lines while a local run lasts, from the job's Beam counters.

Every job's run() starts its pipeline with `progress.run(pipeline)` instead of
`pipeline.run()`. On this machine's runners a line of the counters every
stage keeps (records read, keyed, valid, predicted, decided, dead-lettered:
the figures the end-of-run summary reads) is logged every few seconds while
they change:

  INFO pipelines.progress: 10s: read/records 20,480 · keys/keyed 20,480 ·
      features/valid 20,471 · output/predictions 18,432 · dead letters 9

PROGRESS_EVERY_S in the environment sets the interval (default 5; 0: off).
Remote runners report for themselves: the DataflowRunner logs the job id and
the console URL when it submits, then the job's messages while it waits.

How each local runner is watched:
- DirectRunner (streaming jobs; batch ones when asked for): its result is
  live, so result.metrics() is read from a thread until the run ends.
- FnApiRunner (the batch default) runs the whole job inside pipeline.run()
  and reports metrics at the end only. The Fn API's own progress protocol
  fills the gap: with `progress_request_frequency` the runner asks each
  running bundle for its counters (ProcessBundleProgressRequest), but keeps
  the answers. `_WatchedFnApiRunner` is that runner with the answers, and
  each finished bundle's final counters, added up in a `_Tally`. It relies on
  FnApiRunner internals (its ProgressRequester, _execute_bundle); it checks
  for them and leaves Beam's runner unwatched, with a warning, when they are
  not there.
"""
import functools
import itertools
import logging
import os
import threading
import time

from apache_beam.metrics import monitoring_infos
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.runner import PipelineState

from pipelines import local_runner
from pipelines import summary
from transforms.dead_letter import METRICS_NAMESPACE as DEAD_LETTERS

ENV_EVERY_S = 'PROGRESS_EVERY_S'
DEFAULT_EVERY_S = 5.0
FIRST = 'read'  # the namespace a line starts with: what came in
_LOG = logging.getLogger(__name__)
_watching = threading.Lock()  # one watched FnApiRunner run per process


def every_s():
  """Seconds between progress lines (0: none), from PROGRESS_EVERY_S."""
  text = os.environ.get(ENV_EVERY_S, '')
  try:
    return max(0.0, float(text)) if text else DEFAULT_EVERY_S
  except ValueError:
    _LOG.warning('%s=%r is not a number of seconds: using %s', ENV_EVERY_S,
                 text, DEFAULT_EVERY_S)
    return DEFAULT_EVERY_S


def line(counts):
  """One progress line from summary.counters(): every counter as
  namespace/name, read/* first, then the dead letters' total."""
  dead = sum(counts.get(DEAD_LETTERS, {}).values())
  parts = [f'{ns}/{name} {value:,}'
           for ns in sorted(counts, key=lambda ns: (ns != FIRST, ns))
           if ns != DEAD_LETTERS
           for name, value in sorted(counts[ns].items())]
  return ' · '.join(parts + [f'dead letters {dead:,}'])


def run(pipeline):
  """`pipeline.run()`, logging progress lines while a local run lasts;
  returns the PipelineResult (finished where the runner runs to the end in
  run(), as the FnApiRunner does)."""
  interval = every_s()
  if not interval or not local_runner.is_local(pipeline.options):
    return pipeline.run()
  if type(pipeline.runner) is fn_runner.FnApiRunner and _watchable():
    if _watching.acquire(blocking=False):
      try:
        tally = _Tally()
        pipeline.runner = _WatchedFnApiRunner(tally, interval)
        with _Reporter(tally, interval):
          return pipeline.run()
      finally:
        _watching.release()
  result = pipeline.run()
  _Reporter(result, interval,
            lambda: PipelineState.is_terminal(result.state)).start()
  return result


class _Reporter(threading.Thread):
  """Logs `line()` of `source.metrics()` every `interval` seconds while it
  changes, until stopped or `finished()`. A failure to read the counters
  ends the reporting, never the job."""

  def __init__(self, source, interval, finished=lambda: False):
    super().__init__(name='progress', daemon=True)
    self._source, self._interval, self._finished = source, interval, finished
    self._done = threading.Event()

  def run(self):
    started, last, seen = time.monotonic(), None, {}
    while not self._done.wait(self._interval) and not self._finished():
      try:
        counts = summary.counters(self._source)
      except Exception as e:  # pylint: disable=broad-except
        _LOG.warning('progress lines stop: counters unreadable (%s)', e)
        return
      # Counters only grow: a bundle's live figures can lag its final ones
      # for an instant while it hands them over.
      for ns, names in counts.items():
        for name, value in names.items():
          seen.setdefault(ns, {})[name] = max(value,
                                              seen.get(ns, {}).get(name, 0))
      text = line(seen)
      if seen and text != last:
        _LOG.info('%.0fs: %s', time.monotonic() - started, text)
        last = text

  def __enter__(self):
    self.start()
    return self

  def __exit__(self, *unused):
    self._done.set()
    self.join()


class _Tally(object):
  """The run's counters so far: finished bundles' final monitoring infos
  plus the live ones of each bundle still running. Bundles of one stage run
  (in parallel) within one _execute_bundle call, and those calls follow
  each other, so a finished call retires every running bundle.

  Live counters come two ways. A worker behind the Fn API's control channel
  (gRPC: --direct_num_workers above 1) answers progress requests while its
  bundle runs. The in-process worker (the default) runs a bundle inside the
  request that starts it, so progress requests only come once it is over;
  its running bundle processors are read directly instead, as the worker
  answers such a request itself (BundleProcessor.monitoring_infos()).
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._finished = []
    self._answers = {}  # instruction id -> monitoring infos
    self._stopped = set()
    self._caches = []  # in-process workers' bundle processor caches

  def watch(self, cache):
    with self._lock:
      if all(c is not cache for c in self._caches):
        self._caches.append(cache)

  def bundle_progress(self, instruction_id, progress):
    infos = list(progress.monitoring_infos)
    with self._lock:
      # An empty answer: the bundle is not (or no longer) running.
      if infos and instruction_id not in self._stopped:
        self._answers[instruction_id] = infos

  def bundle_stopped(self, instruction_id):
    with self._lock:
      self._stopped.add(instruction_id)

  def bundles_finished(self, infos):
    with self._lock:
      self._finished = list(monitoring_infos.consolidate(
          itertools.chain(self._finished, infos)))
      self._answers.clear()

  def _running(self):
    live = dict(self._answers)
    for cache in self._caches:
      for instruction_id in list(cache.active_bundle_processors):
        try:
          processor = cache.lookup(instruction_id)
        except RuntimeError:  # failed or just released
          continue
        if processor is not None:
          live[instruction_id] = processor.monitoring_infos()
    return live.values()

  def metrics(self):
    """The counters so far, as a result's metrics() answers."""
    with self._lock:
      infos = list(monitoring_infos.consolidate(itertools.chain(
          self._finished, *self._running())))
    return fn_runner.FnApiMetrics({'': infos})


def _watchable():
  """Whether this Beam has the FnApiRunner internals watching needs."""
  requester = getattr(fn_runner, 'ProgressRequester', None)
  embedded = getattr(worker_handlers, 'EmbeddedWorkerHandler', None)
  ok = (requester is not None and embedded is not None and
        hasattr(fn_runner.FnApiRunner, '_execute_bundle') and
        {'stop', 'run'} <= set(vars(requester)))
  if not ok:
    _LOG.warning('No progress lines: this Beam\'s FnApiRunner changed.')
  return ok


class _WatchedFnApiRunner(fn_runner.FnApiRunner):
  """Beam's FnApiRunner asking running bundles for their counters every
  `interval` seconds, adding up the answers in `tally`."""

  def __init__(self, tally, interval):
    super().__init__(progress_request_frequency=interval)
    self._tally = tally

  def run_pipeline(self, pipeline, options):
    beam_requester = fn_runner.ProgressRequester
    fn_runner.ProgressRequester = functools.partial(
        _TallyingRequester, self._tally)
    try:
      return super().run_pipeline(pipeline, options)
    finally:
      fn_runner.ProgressRequester = beam_requester

  def _execute_bundle(self, runner_execution_context, bundle_context_manager,
                      bundle_input):
    for handler in bundle_context_manager.worker_handlers:
      if isinstance(handler, worker_handlers.EmbeddedWorkerHandler):
        self._tally.watch(handler.bundle_processor_cache)
    result = super()._execute_bundle(
        runner_execution_context, bundle_context_manager, bundle_input)
    self._tally.bundles_finished(result.process_bundle.monitoring_infos)
    return result


class _TallyingRequester(fn_runner.ProgressRequester):
  """Beam's progress requester, handing every answer to the tally (and
  none after its bundle ended)."""

  def __init__(self, tally, worker_handler, instruction_id, frequency,
               callback=None):
    del callback  # Beam passes none
    super().__init__(worker_handler, instruction_id, frequency,
                     functools.partial(tally.bundle_progress, instruction_id))
    self._tally_stop = functools.partial(tally.bundle_stopped, instruction_id)

  def stop(self):
    self._tally_stop()
    super().stop()
