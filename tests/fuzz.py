"""Hypothesis profiles and the input strategies the parser fuzz tests share.

Profiles (HYPOTHESIS_PROFILE selects one; `make test` runs `suite`, `make
faults` runs `faults`): `suite` keeps the property tests inside the test
suite's time budget and is derandomized, so a failure is the same on every
run and every machine; `faults` tries many more, random, examples.
"""
import json
import os

from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

PROFILE_VARIABLE = 'HYPOTHESIS_PROFILE'
settings.register_profile(
    'suite', max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    'faults', max_examples=3000, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])


def load_profile():
  settings.load_profile(os.environ.get(PROFILE_VARIABLE, 'suite'))


# Text as clients really send it, odd corners included: every Unicode
# category (lone surrogates too, which JSON's \\ud800 escapes can carry),
# control characters, the separators parsers split on.
characters = st.one_of(
    st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from('\n\r\t ,;"\'\\{}[]|#\x00\u2028\ufeff'))
text = st.text(characters, max_size=40)
numbers = st.one_of(
    st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(text, children, max_size=4)),
    max_leaves=12)
records = st.dictionaries(st.one_of(text, st.sampled_from(
    ['key', 'text', 'id', 'comment_id', 'timestamp'])), json_values,
                          max_size=6)


def as_json(value):
  """Python's JSON text of `value`, NaN and lone surrogates included (as
  the JSON a client may send)."""
  return json.dumps(value, ensure_ascii=True)


# Byte strings that look like lines of JSON: real JSON of arbitrary values,
# mangled JSON (truncated, bytes flipped), and arbitrary bytes.
json_lines = st.one_of(
    json_values.map(as_json).map(str.encode),
    records.map(as_json).map(str.encode),
    st.tuples(records.map(as_json), st.integers(0, 60)).map(
        lambda pair: pair[0][:pair[1]].encode()),
    st.binary(max_size=60))
