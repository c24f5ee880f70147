"""End to end: the two-phase cascade, its pending path and its replay."""
import json

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

import apache_beam as beam
from models.runtime import lite_predictor
from models.runtime import predictor
from pipelines import launch
from pipelines import two_phase
from tests import batch_io
from tests.tiny_models import POISON
from tests.tiny_two_phase import tiny_phase1  # noqa: F401
from transforms.two_phase import forwarding
from transforms.two_phase import cascade
from transforms.inference.signature_handler import SignatureModelHandler
from transforms.inference.tflite_handler import TFLiteTextModelHandler
from transforms.record_chunks import ChunkRecords
from transforms.record_chunks import Unchunk

WORDS = ['great', 'film', 'awful', 'acting', 'loved', 'boring', 'it',
         'wonderful', 'mess', 'story']
ROWS = [{'key': f'k{i:03d}', 'text': ' '.join(
    WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(1 + i % 5)),
         'lang': 'en'} for i in range(80)]


def _band(phase1_path, rows):
  """A band that forwards the middle ~40% of these rows' phase-1 scores."""
  scores = lite_predictor.load(phase1_path).predict_texts(
      [r['text'] for r in rows])
  low, high = np.quantile(scores, [0.3, 0.7])
  return f'uncertain:{low:.6f},{high:.6f}'


def _expected(phase1_path, phase2_dir, rows, rule):
  p1 = lite_predictor.load(phase1_path).predict_texts(
      [r['text'] for r in rows])
  p2 = predictor.load(phase2_dir).predict_columns(
      {'reviews': [r['text'] for r in rows]})['positive_review_probability']
  rule = forwarding.parse_rule(rule)
  out = {}
  for r, s1, s2 in zip(rows, p1.tolist(), p2):
    decision = rule.phase1_decision(s1)
    out[r['key']] = ((decision, 'phase1', s1, None) if decision else
                     (forwarding.phase2_decision(s2), 'phase2', s1, s2))
  return out


def _run(tmp_path, pattern, *flags, name='out'):
  output = str(tmp_path / name / 'decisions')
  figures = two_phase.run(['--input', pattern, '--output', output,
                           '--phase1_batch_size', '16',
                           '--phase2_batch_size', '8',
                           '--runner', 'FnApiRunner', *flags])
  return figures, output


def test_cascade_decides_confident_records_and_forwards_the_rest(
    tmp_path, tiny_phase1, tiny_model_dir):
  phase1 = tiny_phase1[0]
  rule = _band(phase1, ROWS)
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', 3)
  figures, output = _run(tmp_path, pattern, '--phase1_model', phase1,
                         '--phase2_model_dir', tiny_model_dir,
                         '--forward', rule)
  decisions = batch_io.read_jsonl(output)
  expected = _expected(phase1, tiny_model_dir, ROWS, rule)
  assert sorted(d['key'] for d in decisions) == sorted(expected)
  for d in decisions:
    decision, by, s1, s2 = expected[d['key']]
    assert (d['decision'], d['decided_by']) == (decision, by)
    assert d['phase1_score'] == pytest.approx(s1, abs=1e-6)
    assert d['phase1_model'] == 'phase1.tflite'
    if by == 'phase2':
      assert d['phase2_score'] == pytest.approx(s2, abs=1e-6)
      assert d['phase2_model'] == 'tiny/1'
    else:
      assert d['phase2_score'] is None and d['phase2_model'] is None
    assert d['decided_at'].endswith('+00:00')
  forwarded = sum(by == 'phase2' for _, by, _, _ in expected.values())
  assert 0 < forwarded < len(ROWS)
  assert figures['forwarded'] == figures['decided_by_phase2'] == forwarded
  assert figures['decided_by_phase1'] == len(ROWS) - forwarded
  assert figures['pending'] == 0 and figures['reconciled']
  assert batch_io.read_jsonl(output + '_pending') == []


def test_positive_rule_sends_only_likely_positives_to_phase2(
    tmp_path, tiny_phase1, tiny_model_dir):
  phase1 = tiny_phase1[0]
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS, 'jsonl', 2)
  figures, output = _run(tmp_path, pattern, '--phase1_model', phase1,
                         '--phase2_model_dir', tiny_model_dir,
                         '--forward', 'positive:0.5')
  decisions = {d['key']: d for d in batch_io.read_jsonl(output)}
  assert len(decisions) == len(ROWS)
  for d in decisions.values():
    if d['phase1_score'] < 0.5:
      assert (d['decided_by'], d['decision']) == ('phase1', 'negative')
    else:
      assert d['decided_by'] == 'phase2' and d['phase2_score'] is not None
  assert 0 < figures['forwarded'] < len(ROWS) and figures['reconciled']


@pytest.mark.parametrize('phase2_flags', [
    [],                                            # offline: no phase 2 given
    ['--phase2_model_dir', '{tmp}/no/such/model'],  # phase 2 unreadable
])
def test_phase2_unavailable_records_pend_and_replay_later(
    tmp_path, tiny_phase1, tiny_model_dir, phase2_flags):
  phase1 = tiny_phase1[0]
  rule = _band(phase1, ROWS)
  rows = ROWS + [{'key': 'bad', 'text': 42}]    # a dead letter as well
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 2)
  flags = [f.format(tmp=tmp_path) for f in phase2_flags]
  figures, output = _run(tmp_path, pattern, '--phase1_model', phase1,
                         '--forward', rule, *flags)
  decided = batch_io.read_jsonl(output)
  pending = batch_io.read_jsonl(output + '_pending')
  dead = batch_io.read_jsonl(output + '_errors')
  expected = _expected(phase1, tiny_model_dir, ROWS, rule)
  forwarded = {k for k, v in expected.items() if v[1] == 'phase2'}
  assert {p['key'] for p in pending} == forwarded
  assert {d['key'] for d in decided} == set(expected) - forwarded
  assert [d['key'] for d in dead] == ['bad']
  assert all(p['reason'] == 'phase2_unavailable' for p in pending)
  by_key = {r['key']: r for r in ROWS}
  for p in pending:   # nothing lost: the complete original record waits
    assert p['record'] == by_key[p['key']]
    assert p['phase1_score'] == pytest.approx(expected[p['key']][2], abs=1e-6)
  assert figures['pending'] == len(forwarded) and figures['reconciled']
  assert figures['inputs'] == len(decided) + len(pending) + len(dead)

  # Phase 2 is back: replay the pending records through phase 2 alone.
  again, replayed_out = _run(
      tmp_path, output + '_pending*', '--replay_pending',
      '--phase2_model_dir', tiny_model_dir, name='replay')
  replayed = batch_io.read_jsonl(replayed_out)
  assert {d['key'] for d in replayed} == forwarded
  for d in replayed:
    decision, by, s1, s2 = expected[d['key']]
    assert (d['decision'], d['decided_by']) == (decision, 'phase2')
    assert d['phase1_score'] == pytest.approx(s1, abs=1e-6)
    assert d['phase2_score'] == pytest.approx(s2, abs=1e-6)
  assert again['inputs'] == len(pending) == again['decided_by_phase2']
  assert again['pending'] == 0 and again['reconciled']
  # Together the two runs decided every valid record exactly once.
  assert sorted(d['key'] for d in decided + replayed) == sorted(expected)


def test_records_phase2_fails_on_pend_while_their_batch_mates_are_decided(
    tmp_path, tiny_phase1, poison_model_dir):
  rows = [{'key': f'p{i:02d}', 'text': 'x' * (i + 1)} for i in range(21)]
  rows[6]['text'] = POISON
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 2)
  figures, output = _run(
      tmp_path, pattern, '--phase1_model', tiny_phase1[0],
      '--forward', 'uncertain:0,1',          # forward everything
      '--phase2_model_dir', poison_model_dir, '--phase2_output', 'length')
  decided = batch_io.read_jsonl(output)
  (pending,) = batch_io.read_jsonl(output + '_pending')
  assert pending['key'] == 'p06' and pending['reason'] == 'phase2_failed'
  assert 'poisoned batch' in pending['error']
  assert pending['record'] == {'key': 'p06', 'text': POISON}
  assert len(decided) == 20 and all(d['decided_by'] == 'phase2'
                                    for d in decided)
  assert {d['key']: d['phase2_score'] for d in decided} == {
      r['key']: float(len(r['text'])) for r in rows if r['text'] != POISON}
  assert batch_io.read_jsonl(output + '_errors') == []
  assert figures['pending'] == 1 and figures['reconciled']


def test_repeated_keys_and_bad_records_are_accounted_for(
    tmp_path, tiny_phase1, tiny_model_dir):
  # Chunks carry the records through both phases: a repeated key keeps one
  # record (decided like any other), the other copies and the records that
  # cannot be scored are dead letters; nothing is lost or decided twice.
  phase1 = tiny_phase1[0]
  rule = _band(phase1, ROWS)
  repeats = [dict(ROWS[i], lang='copy') for i in (3, 4, 40)]
  bad = [{'key': 'no-text'}, {'key': 'empty', 'text': ''},
         {'text': 'no key at all'}, {'key': 'long', 'text': 'y' * 300}]
  rows = ROWS + repeats + bad
  pattern = batch_io.write_shards(tmp_path / 'in', rows, 'jsonl', 3)
  figures, output = _run(tmp_path, pattern, '--phase1_model', phase1,
                         '--phase2_model_dir', tiny_model_dir,
                         '--forward', rule, '--max_text_bytes', '200')
  decisions = batch_io.read_jsonl(output)
  dead = batch_io.read_jsonl(output + '_errors')
  expected = _expected(phase1, tiny_model_dir, ROWS, rule)
  assert sorted(d['key'] for d in decisions) == sorted(expected)
  for d in decisions:  # the kept copy of a repeated key has the same text
    assert (d['decision'], d['decided_by']) == expected[d['key']][:2]
  assert sorted((str(d['key']), d['reason']) for d in dead) == sorted(
      [(ROWS[i]['key'], 'duplicate_key') for i in (3, 4, 40)] +
      [('no-text', 'missing_feature'), ('empty', 'empty_text'),
       ('None', 'missing_key'), ('long', 'text_too_long')])
  assert figures['inputs'] == len(rows) == len(decisions) + len(dead)
  assert figures['reconciled'] and figures['pending'] == 0


def test_malformed_pending_lines_are_dead_letters_on_replay(
    tmp_path, tiny_model_dir):
  path = tmp_path / 'pending.jsonl'
  good = {'key': 'a', 'phase1_score': 0.5, 'phase1_model': 'm',
          'reason': 'phase2_unavailable', 'record': {'key': 'a',
                                                     'text': 'great film'}}
  path.write_text(json.dumps(good) + '\n' + json.dumps({'key': 'b'}) + '\n')
  figures, output = _run(tmp_path, str(path), '--replay_pending',
                         '--phase2_model_dir', tiny_model_dir)
  assert [d['key'] for d in batch_io.read_jsonl(output)] == ['a']
  (dead,) = batch_io.read_jsonl(output + '_errors')
  assert dead['reason'] == 'not_a_pending_record' and dead['key'] == 'b'
  assert figures['reconciled']


def test_cascade_transform_in_a_test_pipeline(tiny_phase1, tiny_model_dir):
  phase1 = tiny_phase1[0]
  rule = forwarding.parse_rule(_band(phase1, ROWS))
  expected = _expected(phase1, tiny_model_dir, ROWS, str(rule))
  with TestPipeline('FnApiRunner') as p:
    out = (p
           | beam.Create([(r['key'], r) for r in ROWS])
           | ChunkRecords(8)
           | cascade.TwoPhaseCascadeChunks(
               TFLiteTextModelHandler(phase1, batch_size=8), rule,
               cascade.Phase2(SignatureModelHandler(
                   tiny_model_dir, ['reviews'], feature_map={
                       'reviews': 'text'}, batch_size=8),
                   'positive_review_probability')))
    assert_that(
        out.decisions | Unchunk() | beam.Map(
            lambda d: (d['key'], d['decision'], d['decided_by'])),
        equal_to([(k, v[0], v[1]) for k, v in expected.items()]))
    assert_that(out.pending, equal_to([]), label='no pending')
    assert_that(out.dead_letter, equal_to([]), label='no dead letters')


@pytest.mark.parametrize('flags, message', [
    (['--forward', 'uncertain:0.9,0.1'], '--forward:'),
    (['--forward', 'sometimes'], '--forward:'),
    ([], '--forward: required'),
    (['--forward', 'positive:0.5', '--phase1_model', 'nowhere.tflite'],
     "--phase1_model: 'nowhere.tflite' does not exist"),
    (['--forward', 'positive:0.5', '--phase2_model_dir', '{tiny}',
      '--phase2_output', 'nope'], '--phase2_output: signature'),
    (['--forward', 'positive:0.5', '--phase2_model_dir', '{tiny}',
      '--phase2_signature', 'nope'], '--phase2_signature:'),
    (['--forward', 'positive:0.5', '--phase1_batch_size', '0'],
     '--phase1_batch_size: must be at least 1'),
])
def test_bad_command_lines_fail_early_with_one_line(
    tmp_path, tiny_phase1, tiny_model_dir, capsys, flags, message):
  pattern = batch_io.write_shards(tmp_path / 'in', ROWS[:3], 'jsonl', 1)
  flags = [f.format(tiny=tiny_model_dir) for f in flags]
  if '--phase1_model' not in flags:
    flags += ['--phase1_model', tiny_phase1[0]]
  code = launch.main(two_phase.run, ['--input', pattern, '--output',
                                     str(tmp_path / 'o'), *flags])
  err = capsys.readouterr().err.strip()
  assert code == launch.EXIT_USAGE
  assert message in err and len(err.splitlines()) == 1
