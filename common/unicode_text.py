"""Text that no output can carry: lone surrogates.

JSON may escape a surrogate alone ("\\ud800"), and Python's JSON decoder
also accepts the UTF-8-like bytes of one; both decode to a `str` that no
UTF-8 writer (a sink, orjson, TensorFlow, BigQuery) accepts, so a record
holding one fails wherever it is next written. Readers find them here, once,
and dead-letter the record as `invalid_text` with its original bytes.
"""
import re

_SURROGATE = re.compile('[\ud800-\udfff]')


def has_lone_surrogate(value):
  """True when a str anywhere in `value` (str, dict keys and values,
  lists) holds a surrogate code point."""
  if isinstance(value, str):
    return not value.isascii() and _SURROGATE.search(value) is not None
  if isinstance(value, dict):
    return any(has_lone_surrogate(k) or has_lone_surrogate(v)
               for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return any(has_lone_surrogate(v) for v in value)
  return False
