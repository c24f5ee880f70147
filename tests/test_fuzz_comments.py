"""Property-based tests of what moderation reads from Pub/Sub: comment
payloads and their timestamps.

Every message gives exactly one output, a timestamped comment or a dead
letter with a reason (never an exception escaping the DoFn); every event
time is epoch seconds inside Beam's range or a BadTimestamp.
"""
import datetime
import json

from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from common.event_time import BadTimestamp
from common.event_time import parse_timestamp
from tests import fuzz
from transforms.dead_letter import DEAD_LETTER
from transforms.io import sinks
from transforms.moderation import comments
from transforms.moderation import rule

PARSE_REASONS = {'unparseable_json', 'invalid_text', 'missing_field',
                 'bad_field', 'bad_timestamp', 'empty_text', 'oversized_text'}
MAX_TEXT = 30
PUBLISH_TIME = Timestamp(1_700_000_000)

iso_times = st.builds(
    lambda t, sep, spec: t.isoformat(sep=sep, timespec=spec),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones(),
                                     st.just(datetime.timezone.utc))),
    st.sampled_from(['T', ' ']),
    st.sampled_from(['auto', 'seconds', 'microseconds']))
timestamps = st.one_of(
    fuzz.json_values, iso_times, iso_times.map(lambda s: s + 'Z'),
    fuzz.numbers, fuzz.numbers.map(str), st.integers().map(str))


@given(timestamps)
@example(10**400)
@example('9999-12-31T23:59:59-23:59')
def test_a_timestamp_is_epoch_seconds_in_range_or_bad(value):
  try:
    seconds = parse_timestamp(value)
  except BadTimestamp as e:
    assert str(e)
    return
  assert isinstance(seconds, float)
  Timestamp(micros=round(seconds * 1e6))  # Beam can carry it


comment_objects = st.fixed_dictionaries({}, optional={
    'comment_id': st.one_of(fuzz.json_values, st.text(max_size=5)),
    'commenter_id': st.one_of(fuzz.json_values, st.integers()),
    'text': st.one_of(fuzz.text, fuzz.json_values),
    'timestamp': timestamps,
}).map(fuzz.as_json)
payloads = st.one_of(
    comment_objects.map(str.encode), comment_objects,
    fuzz.json_lines, st.binary(max_size=40))


def _parse(payload, timestamp_optional):
  fn = comments.ParseComments(MAX_TEXT, timestamp_optional)
  return list(fn.process(payload, PUBLISH_TIME))


@given(payloads, st.booleans())
@example(b'{"comment_id": "c", "commenter_id": 1, "text": "hi", '
         b'"timestamp": 1' + b'0' * 400 + b'}', False)
def test_a_message_is_one_comment_or_one_dead_letter(payload, optional):
  outputs = _parse(payload, optional)
  assert len(outputs) == 1
  out = outputs[0]
  if isinstance(out, TaggedOutput):
    assert out.tag == DEAD_LETTER
    assert out.value['reason'] in PARSE_REASONS
    assert out.value['stage'] == comments.STAGE
    return
  assert isinstance(out, TimestampedValue)
  comment = out.value
  assert comment['comment_id'] and comment['commenter_id']
  assert 0 < len(comment['text']) <= MAX_TEXT and comment['text'].strip()
  assert Timestamp.from_rfc3339(comment['timestamp']) == out.timestamp


@given(payloads)
@example(json.dumps({'comment_id': 'c', 'commenter_id': 'u', 'text': '\ud800',
                     'timestamp': 1}).encode())
def test_an_accepted_comment_can_be_decided_and_written(payload):
  out = _parse(payload, False)[0]
  if isinstance(out, TaggedOutput):
    sinks.to_json(out.value).encode('utf-8')
    return
  comment = dict(out.value, entities=[])
  buffered = rule._as_json(comment)  # pylint: disable=protected-access
  decided = rule.decide(json.loads(buffered), out.timestamp.micros, {},
                        rule.HOUR_MICROS)
  sinks.to_json(decided).encode('utf-8')
