"""Records out to Pub/Sub, as every streaming job writes them: one JSON
message (UTF-8) per record. (Jobs read with Beam's ReadFromPubSub as it is.)

On the DirectRunner, pipelines.local_runner swaps in faster local reads and
writes of the same transforms; on Dataflow the service's own are used.
"""
import apache_beam as beam
import orjson

from transforms.io.sinks import to_json


def _payload(record):
  return to_json(record).encode('utf-8')


class WriteJson(beam.PTransform):
  """Dict records -> JSON messages on `topic`."""

  def __init__(self, topic):
    super().__init__()
    self._topic = topic

  def expand(self, records):
    return (records
            | 'To JSON' >> beam.Map(_payload)
            | 'WriteToPubSub' >> beam.io.WriteToPubSub(self._topic))


def json_object(payload):
  """A published payload's JSON object, or None (not JSON, not an object):
  how a job's outcome_key reads what it published (pipelines/local_acks.py)."""
  try:
    record = orjson.loads(payload)
  except orjson.JSONDecodeError:
    return None
  return record if isinstance(record, dict) else None


def raw_key(raw):
  """The key under which a published dead letter's `raw` (a message's text,
  or the record parsed from it, made JSON-safe) is matched to the message
  it came from (pipelines/local_acks.py): the same for the message and for
  the dead letter read back from its topic."""
  if isinstance(raw, str):
    return ('raw', raw)
  return ('raw', orjson.dumps(raw, option=orjson.OPT_SORT_KEYS))
