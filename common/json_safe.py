"""Turns decoded records into values that JSON, Avro and BigQuery all accept.

Readers hand back whatever their format decodes to (bytes from Avro/TFRecord,
numpy scalars from Parquet, datetimes, decimals). Dead letters must carry the
complete original record so it can be replayed, and outputs copy fields through,
so everything that leaves a transform goes through `json_safe` once.
"""
import base64
import datetime
import decimal


def json_safe(value):
  """Returns `value` converted recursively to JSON-serialisable Python types.

  Bytes that are valid UTF-8 become str; other bytes become
  {"base64": "..."} so nothing is silently lost.
  """
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, (bytes, bytearray, memoryview)):
    raw = bytes(value)
    try:
      return raw.decode('utf-8')
    except UnicodeDecodeError:
      return {'base64': base64.b64encode(raw).decode('ascii')}
  if isinstance(value, (datetime.datetime, datetime.date)):
    return value.isoformat()
  if isinstance(value, decimal.Decimal):
    return float(value)
  if hasattr(value, 'tolist'):  # numpy scalars and arrays
    return json_safe(value.tolist())
  return str(value)
