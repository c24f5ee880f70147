"""Property-based tests of the key rules (transforms.keyed.keys.KeyRule).

Any record gives a usable string key or a reason, never an exception; the
content hash of a record is the same however its fields are ordered, and
records with different content get different keys.
"""
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzz
from transforms.keyed import keys

RULES = st.one_of(
    st.builds(keys.KeyRule, st.sampled_from(['key', 'id', '']),
              st.just(keys.FROM_FIELD)),
    st.just(keys.KeyRule('key', keys.CONTENT_HASH)))


@given(RULES, fuzz.records)
@example(keys.KeyRule('key', keys.CONTENT_HASH), {'text': '\ud800'})
@example(keys.KeyRule('key'), {'key': 2**80})
def test_a_record_has_a_key_or_a_reason(rule, record):
  key, problem = rule.key_of(record)
  assert (key is None) != (problem is None)
  if key is not None:
    assert isinstance(key, str) and key.strip()
    assert rule.keys_of_chunk([record]) == [key]
  else:
    assert rule.field in problem
    assert rule.keys_of_chunk([record]) == []


@given(fuzz.records)
def test_the_content_hash_ignores_field_order(record):
  rule = keys.KeyRule('key', keys.CONTENT_HASH)
  shuffled = dict(reversed(list(record.items())))
  assert rule.key_of(record) == rule.key_of(shuffled)


@given(fuzz.records, fuzz.records)
def test_different_content_has_different_keys(a, b):
  if keys.canonical_json(a) != keys.canonical_json(b):
    assert keys.content_hash_key(a) != keys.content_hash_key(b)


@given(fuzz.json_values)
def test_a_field_key_is_the_field_as_text(value):
  key, _ = keys.KeyRule('key').key_of({'key': value})
  if key is not None:
    assert key == (value if isinstance(value, str) else str(value))
    key.encode('utf-8')  # an output can carry it back


def test_a_key_that_is_not_unicode_text_is_refused():
  key, problem = keys.KeyRule('key').key_of({'key': 'a\ud800'})
  assert key is None and 'not valid Unicode' in problem
