"""Event times as records carry them: ISO-8601 with an offset, or epoch
seconds, parsed once at the edge of a job (then carried as Beam timestamps).

A naive ISO-8601 string (no offset) is refused: guessing its zone would shift
every window by hours without anyone noticing.
"""
import datetime
import math

# Beam timestamps must stay well inside its representable range.
_MIN_EPOCH_S = 0
_MAX_EPOCH_S = 253402300799  # 9999-12-31T23:59:59Z


class BadTimestamp(ValueError):
  """The timestamp is neither ISO-8601 with an offset nor epoch seconds."""


def parse_timestamp(value):
  """Returns epoch seconds (float) from ISO-8601 with offset or epoch seconds.

  A naive ISO-8601 string (no offset) is refused: guessing its zone would shift
  the 24-hour windows by hours without anyone noticing. Booleans and
  non-finite numbers are refused too (JSON `true` is an int to Python).
  """
  if isinstance(value, bool) or value is None:
    raise BadTimestamp(f'not a timestamp: {value!r}')
  if isinstance(value, (int, float)):
    try:
      seconds = float(value)
    except OverflowError:  # an integer beyond any float
      raise BadTimestamp(f'timestamp out of range: {value!r}') from None
  elif isinstance(value, str):
    text = value.strip()
    try:
      seconds = float(text)
    except ValueError:
      try:
        parsed = datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
      except ValueError as e:
        raise BadTimestamp(f'not ISO-8601 or epoch seconds: {value!r}') from e
      if parsed.tzinfo is None:
        raise BadTimestamp(f'ISO-8601 timestamp without offset: {value!r}')
      seconds = parsed.timestamp()
  else:
    raise BadTimestamp(f'not a timestamp: {value!r}')
  if not math.isfinite(seconds) or not _MIN_EPOCH_S <= seconds <= _MAX_EPOCH_S:
    raise BadTimestamp(f'timestamp out of range: {value!r}')
  return seconds
