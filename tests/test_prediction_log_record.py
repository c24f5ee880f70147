"""The continuous-evaluation row shared by the online and Beam writers."""
import datetime
import hashlib
import json

import pytest

from common.records.prediction_log import format_time
from common.records.prediction_log import log_row
from common.records.prediction_log import sampled

UTC = datetime.timezone.utc


def test_log_row_has_the_book_columns_as_json_strings():
  when = datetime.datetime(2026, 11, 25, 13, 5, 7, 250000, tzinfo=UTC)
  instance = {'key': 'r1', 'reviews': 'Très bien'}
  prediction = {'key': 'r1', 'positive_review_probability': 0.75}
  row = log_row('sentiment', 'sentiment/1', 'r1', instance, prediction, when)
  assert row == {
      'model': 'sentiment',
      'model_version': 'sentiment/1',
      'time': '2026-11-25T13:05:07.250000Z',
      'key': 'r1',
      'raw_data': '{"instances":[{"key":"r1","reviews":"Très bien"}]}',
      'raw_prediction':
          '{"predictions":[{"key":"r1","positive_review_probability":0.75}]}',
      'groundtruth': None,
  }
  assert json.loads(row['raw_data']) == {'instances': [instance]}
  assert json.loads(row['raw_prediction']) == {'predictions': [prediction]}


def test_time_is_utc_whatever_the_input_zone():
  paris = datetime.timezone(datetime.timedelta(hours=1))
  assert format_time(datetime.datetime(2026, 1, 1, 1, 0, tzinfo=paris)) == (
      '2026-01-01T00:00:00.000000Z')
  assert format_time(0) == '1970-01-01T00:00:00.000000Z'
  assert format_time(1.5) == '1970-01-01T00:00:01.500000Z'
  with pytest.raises(ValueError, match='naive'):
    format_time(datetime.datetime(2026, 1, 1))


def test_sampling_is_deterministic_and_close_to_the_rate():
  keys = [f'review-{i}' for i in range(20000)]
  chosen = {k for k in keys if sampled(k, 0.1)}
  assert chosen == {k for k in keys if sampled(k, 0.1)}  # same on a rerun
  assert 0.09 < len(chosen) / len(keys) < 0.11
  # A larger rate keeps every key a smaller one chose (a threshold on a hash).
  assert chosen <= {k for k in keys if sampled(k, 0.5)}
  assert all(sampled(k, 1.0) for k in keys[:100])
  assert not any(sampled(k, 0.0) for k in keys[:100])


def test_sampling_is_by_the_key_text():
  # The decision is sha256(str(key))[:8] < rate * 2**64: any writer that
  # follows it (the Beam side too) samples exactly the same keys.
  digest = hashlib.sha256(b'42').digest()
  fraction = int.from_bytes(digest[:8], 'big') / 2**64
  assert sampled(42, fraction + 1e-9) and not sampled(42, fraction)
  assert sampled('42', fraction + 1e-9)
