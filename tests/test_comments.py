"""Parsing and validating comment messages at the edge."""
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from common.event_time import BadTimestamp
from transforms.moderation.comments import ReadComments
from common.event_time import parse_timestamp
from transforms.dead_letter import DEAD_LETTER


@pytest.mark.parametrize('value,expected', [
    ('2024-05-01T02:00:00+02:00', 1714521600.0),
    ('2024-05-01T00:00:00Z', 1714521600.0),
    (1714521600, 1714521600.0),
    (1714521600.5, 1714521600.5),
    ('1714521600', 1714521600.0),
])
def test_parse_timestamp_accepts_iso_with_offset_and_epoch_seconds(
    value, expected):
  assert parse_timestamp(value) == expected


@pytest.mark.parametrize('value', [
    '2024-05-01T00:00:00', 'yesterday', True, None, float('nan'), -5, [],
    10**12])
def test_parse_timestamp_refuses_naive_and_garbage(value):
  with pytest.raises(BadTimestamp):
    parse_timestamp(value)


def _line(**fields):
  base = {'comment_id': 'c1', 'commenter_id': 'u1', 'text': 'Hi Obama',
          'timestamp': '2024-05-01T02:00:00+02:00'}
  base.update(fields)
  return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_valid_and_invalid_messages_split_into_comments_and_dead_letters():
  lines = {
      'ok': _line(),
      'ok_int_ids': _line(comment_id=7, commenter_id=8, timestamp=1714521600),
      'unparseable_json': '{"comment_id": ',
      'not_object': '[1, 2]',
      'missing_field': _line(text=...),
      'bad_field': _line(commenter_id=''),
      'bad_timestamp': _line(timestamp='2024-05-01 00:00'),
      'empty_text': _line(text='  \n'),
      'oversized_text': _line(text='x' * 101),
      'bytes_not_utf8': b'\xff\xfe',
  }
  p = TestPipeline(options=PipelineOptions(runner='FnApiRunner'))
  out = (p | beam.Create(list(lines.values()))
         | ReadComments(max_text_chars=100))
  assert_that(
      out.comments | beam.Map(
          lambda c: (c['comment_id'], c['commenter_id'], c['timestamp'])),
      equal_to([('c1', 'u1', '2024-05-01T00:00:00Z'),
                ('7', '8', '2024-05-01T00:00:00Z')]), label='comments')
  assert_that(
      out.comments | 'Timestamps' >> beam.Map(
          lambda c, t=beam.DoFn.TimestampParam: t.micros // 10**6),
      equal_to([1714521600, 1714521600]), label='event_time')
  assert_that(
      out[DEAD_LETTER] | beam.Map(lambda d: (d['reason'], d['raw'])),
      equal_to([
          ('unparseable_json', lines['unparseable_json']),
          ('unparseable_json', lines['not_object']),
          ('missing_field', lines['missing_field']),
          ('bad_field', lines['bad_field']),
          ('bad_timestamp', lines['bad_timestamp']),
          ('empty_text', lines['empty_text']),
          ('oversized_text', lines['oversized_text']),
          ('invalid_text', '//4='),  # base64, flagged by raw_encoding
      ]), label='dead_letters')
  p.run().wait_until_finish()


def test_streaming_messages_without_timestamp_take_the_element_time():
  from apache_beam.transforms.window import TimestampedValue
  p = TestPipeline(options=PipelineOptions(runner='FnApiRunner'))
  out = (p | beam.Create([_line(timestamp=...)])
         | beam.Map(lambda m: TimestampedValue(m, 1714521600))
         | ReadComments(timestamp_optional=True))
  assert_that(out.comments | beam.Map(lambda c: c['timestamp']),
              equal_to(['2024-05-01T00:00:00Z']))
  p.run().wait_until_finish()
