"""Sampled prediction logging for continuous evaluation, off the request path.

A request only puts one tuple on a bounded queue (never waiting: when the
queue is full the entry is dropped and counted, because serving matters more
than logging). A background thread samples by key, builds the rows with
`common.records.prediction_log` (the same builder as the Beam-side writer) and
appends them as JSON lines.

Files are safe to pick up: rows go to `predictions-...jsonl.inprogress`,
flushed after every drained burst, and the file is renamed to `.jsonl` when it
reaches `max_rows` rows or `max_seconds` of age, and at shutdown. A reader
(the evaluation job, a loader to BigQuery) globs `*.jsonl` and never sees a
half-written file.
"""
import datetime
import json
import logging
import os
import queue
import threading
import time

from common.records import prediction_log as log_record
LOG = logging.getLogger('serving')
IN_PROGRESS = '.inprogress'
_STOP = object()


def sampling_id(key, instance):
  """What decides whether an instance is logged: its key, or for unkeyed
  instances their canonical JSON, so resending the same instance gives the
  same decision."""
  if key is not None:
    return key
  return json.dumps(instance, sort_keys=True, separators=(',', ':'))


class PredictionLogWriter:
  """Writes sampled continuous-evaluation rows as rotating JSONL files."""

  def __init__(self, directory, model, model_version, rate=1.0,
               max_rows=10000, max_seconds=60.0, queue_size=10000):
    self.directory = directory
    self.model = model
    self.model_version = model_version
    self.rate = rate
    self.max_rows = max_rows
    self.max_seconds = max_seconds
    self.dropped = 0      # requests not logged because the queue was full
    self.rows_written = 0
    self._queue = queue.Queue(maxsize=queue_size)
    self._thread = None
    self._file = None
    self._path = None
    self._file_rows = 0
    self._file_opened = None
    self._sequence = 0

  def start(self):
    os.makedirs(self.directory, exist_ok=True)
    self._thread = threading.Thread(
        target=self._run, name='prediction-log-writer', daemon=True)
    self._thread.start()

  def log(self, instances, keys, predictions, when=None):
    """Queues one answered request for sampling; never blocks."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    try:
      self._queue.put_nowait((instances, keys, predictions, when))
    except queue.Full:
      self.dropped += 1

  def close(self, timeout=10.0):
    """Writes what is queued, closes and publishes the current file."""
    if self._thread is None:
      return
    self._queue.put(_STOP)
    self._thread.join(timeout)
    self._thread = None

  def _run(self):
    while True:
      try:
        item = self._queue.get(timeout=self._seconds_left())
      except queue.Empty:
        self._safely(self._rotate)  # the open file is old enough to publish
        continue
      stop = False
      while True:  # drain a burst, then flush once
        if item is _STOP:
          stop = True
          break
        self._safely(self._write, *item)
        try:
          item = self._queue.get_nowait()
        except queue.Empty:
          break
      self._safely(self._flush_or_rotate)
      if stop:
        self._safely(self._rotate)
        return

  @staticmethod
  def _safely(fn, *args):
    """A bad entry or a full disk loses log rows, never the writer thread."""
    try:
      fn(*args)
    except Exception:
      LOG.exception('prediction log: %s failed', fn.__name__)

  def _flush_or_rotate(self):
    if self._file is None:
      return
    if self._file_rows >= self.max_rows or self._seconds_left() <= 0:
      self._rotate()
    else:
      self._file.flush()

  def _seconds_left(self):
    if self._file is None:
      return None  # nothing open: wait for the next entry
    age = time.monotonic() - self._file_opened
    return max(0.0, self.max_seconds - age)

  def _write(self, instances, keys, predictions, when):
    for instance, key, prediction in zip(instances, keys, predictions):
      if not log_record.sampled(sampling_id(key, instance), self.rate):
        continue
      row = log_record.log_row(
          self.model, self.model_version, key, instance, prediction, when)
      if self._file is None:
        self._open()
      self._file.write(json.dumps(row, ensure_ascii=False) + '\n')
      self._file_rows += 1
      self.rows_written += 1
      if self._file_rows >= self.max_rows:
        self._rotate()

  def _open(self):
    now = datetime.datetime.now(datetime.timezone.utc)
    self._sequence += 1
    name = (f'predictions-{now:%Y%m%dT%H%M%S}-{os.getpid()}-'
            f'{self._sequence:05d}.jsonl')
    self._path = os.path.join(self.directory, name)
    self._file = open(self._path + IN_PROGRESS, 'w', encoding='utf-8')
    self._file_rows = 0
    self._file_opened = time.monotonic()

  def _rotate(self):
    """Closes the current file and publishes it under its final name."""
    if self._file is None:
      return
    self._file.close()
    os.replace(self._path + IN_PROGRESS, self._path)
    self._file = None
