"""Entity linking measured: the offline backend over the labelled set
(harness.linking_set), and a replayed stream whose decisions must be those
of the 24-hour rule applied to the gold entities."""
import collections
import datetime
import json

import pytest

from harness import linking_set
from pipelines import moderate
from transforms.moderation.entities import LocalEntityFn

DAY = datetime.timedelta(hours=24)


@pytest.fixture(scope='module')
def local_fn():
  fn = LocalEntityFn()
  fn.setup()
  return fn


def _annotate(fn, texts, batch=64):
  out = []
  for i in range(0, len(texts), batch):
    out.extend(fn.annotate(texts[i:i + batch]))
  return out


def test_the_set_is_what_it_claims():
  items = linking_set.make_set()
  assert len(items) >= 2000
  kinds = collections.Counter(item['kind'] for item in items)
  cases = collections.Counter(item['case'] for item in items)
  assert set(kinds) == {'one', 'two', 'ambiguous', 'negative'}
  assert set(cases) == {'as written', 'lower', 'upper'}
  assert kinds['negative'] >= 200 and kinds['two'] >= 300
  # Every form of every person is used, possessives too.
  used = collections.Counter(m['name'].lower() for item in items
                             for m in item['mentions'])
  for person in linking_set.PEOPLE:
    for _, name in person.forms():
      assert used[name.lower()], name
  assert sum("'s " in item['text'] or "' " in item['text']
             for item in items) >= 100
  assert all(not item['gold'] for item in items
             if item['kind'] == 'negative')


def test_offline_linking_holds_recall_and_precision(local_fn):
  items = linking_set.make_set()
  figures = linking_set.score(
      items, _annotate(local_fn, [item['text'] for item in items]))
  wrong = '\n'.join(f'{e["text"]}: missed {e["missed"]}, wrong {e["wrong"]}'
                    for e in figures['errors'])
  assert figures['recall'] >= 0.99, wrong
  assert figures['precision'] >= 0.98, wrong


def _reference_decisions(stream):
  """The 24-hour rule written out plainly over the gold entities: per
  commenter, in (event time, comment_id) order, a comment is rejected if
  any of its people is in an allowed comment of the last 24 hours
  (exclusive), otherwise allowed, and then opens their windows."""
  by_commenter = collections.defaultdict(list)
  for c in stream:
    by_commenter[c['commenter_id']].append(c)
  out = {}
  for comments in by_commenter.values():
    allowed_at = {}
    for c in sorted(comments, key=lambda c: (
        datetime.datetime.fromisoformat(c['timestamp']), c['comment_id'])):
      t = datetime.datetime.fromisoformat(c['timestamp'])
      blocked = sorted(p for p in c['gold']
                       if p in allowed_at and t - allowed_at[p] < DAY)
      if blocked:
        out[c['comment_id']] = ('reject', blocked)
      else:
        out[c['comment_id']] = ('allow', [])
        for p in c['gold']:
          allowed_at[p] = t
  return out


def test_a_replayed_stream_decides_as_the_rule_on_gold_entities(tmp_path):
  stream = linking_set.make_stream()
  assert len(stream) >= 500
  days = {c['timestamp'][:10] for c in stream}
  assert len(days) >= 4
  expected = _reference_decisions(stream)
  rejected = sum(d == 'reject' for d, _ in expected.values())
  assert 0.2 * len(stream) < rejected < 0.8 * len(stream)  # the rule bites
  path = tmp_path / 'stream.jsonl'
  path.write_text(''.join(
      json.dumps({k: v for k, v in c.items() if k != 'gold'}) + '\n'
      for c in stream), encoding='utf-8')
  assert moderate.run(['--input', str(path), '--output',
                       str(tmp_path / 'out')]) == 0
  decisions = {}
  for part in tmp_path.glob('out-decisions-*'):
    for line in part.read_text(encoding='utf-8').splitlines():
      d = json.loads(line)
      decisions[d['comment_id']] = (d['decision'], sorted(d['blocked_by']))
  assert not list(tmp_path.glob('out-dead_letters-*'))[0].read_text()
  differ = {k: (decisions.get(k), v) for k, v in expected.items()
            if decisions.get(k) != v}
  assert not differ
