"""Property-based tests of the alert rule grammar (transforms.evaluation.
alerts.parse_rule): any text is a Rule or a ValueError that quotes it; a
rule written back from its parts parses to the same rule."""
import math

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzz
from transforms.evaluation import alerts

metrics = st.one_of(st.sampled_from(alerts.SCALAR_METRICS),
                    st.sampled_from(alerts.CLASS_METRICS), fuzz.text)
labels = st.one_of(st.none(), st.text(st.characters(
    codec='utf-8', exclude_characters=']'), min_size=1, max_size=8))
ops = st.sampled_from(sorted(alerts.OPS) + ['=', '==', '!'])
thresholds = st.one_of(fuzz.numbers.map(repr), fuzz.text)
spaces = st.sampled_from(['', ' ', '\t', '  '])


@st.composite
def rule_texts(draw):
  label = draw(labels)
  return ''.join([
      draw(spaces), draw(metrics), f'[{label}]' if label else '',
      draw(spaces), draw(st.sampled_from(['', 'drop'])), draw(spaces),
      draw(ops), draw(spaces), draw(thresholds), draw(spaces)])


@given(st.one_of(rule_texts(), fuzz.text))
def test_a_rule_text_is_a_rule_or_a_clear_error(text):
  try:
    rule = alerts.parse_rule(text)
  except ValueError as e:
    assert repr(text) in str(e) or repr(text.strip()) in str(e)
    return
  known = alerts.CLASS_METRICS if rule.label else alerts.SCALAR_METRICS
  assert rule.metric in known and rule.op in alerts.OPS
  again = alerts.parse_rule(
      f'{rule.metric_name}{" drop" if rule.drop else ""}{rule.op}'
      f'{rule.threshold!r}')
  assert (again.metric, again.label, again.op, again.drop) == (
      rule.metric, rule.label, rule.op, rule.drop)


@pytest.mark.xfail(strict=True, reason=(
    'transforms/evaluation/alerts.py (branch evaluation): parse_rule accepts '
    'a threshold of nan (a rule that can never fire, silently) and inf'))
@given(rule_texts())
@example('accuracy<nan')
@example('macro_f1 drop>inf')
def test_an_accepted_threshold_is_a_finite_number(text):
  try:
    rule = alerts.parse_rule(text)
  except ValueError:
    return
  assert math.isfinite(rule.threshold)
