"""ReadLineChunks: the records and dead letters of ReadFromText + parse,
whatever the byte ranges a file is cut into."""
import base64
import gzip
import io
import json
import random

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from transforms.io import line_ranges
from transforms.io import sources
def _reference_lines(data):
  """Lines as ReadFromText splits them ('\\n' or '\\r\\n', no line after a
  final newline)."""
  lines = data.split(b'\n')
  if lines[-1] == b'':
    lines.pop()
  return [line[:-1] if line.endswith(b'\r') else line for line in lines]


def _random_file(rng):
  pieces = []
  for _ in range(rng.randrange(0, 12)):
    text = ''.join(rng.choice(['a', 'é', '€', ' ', '{', '"', '😀'])
                   for _ in range(rng.randrange(0, 9)))
    pieces.append(text.encode('utf-8') + rng.choice([b'\n', b'\r\n']))
  data = b''.join(pieces)
  if data and rng.random() < 0.5:
    data = data[:-1]  # no final newline
  return data


def test_ranges_of_every_size_give_every_line_once():
  rng = random.Random(7)
  for _ in range(200):
    data = _random_file(rng)
    for size in range(1, len(data) + 2):
      lines = []
      for _, start, end in line_ranges._ranges('f.jsonl', len(data), size):  # pylint: disable=protected-access
        end = len(data) if end is None else end
        lines += line_ranges.split_lines(
            line_ranges.read_range(io.BytesIO(data), start, end))
      assert lines == _reference_lines(data), (data, size)


ROWS = [{'key': f'k{i}', 'text': f'text é {i}'} for i in range(40)]
BAD = ['{"broken', '[1, 2]', '']


def _write(tmp_path):
  lines = [json.dumps(r, ensure_ascii=False) for r in ROWS] + BAD
  random.Random(1).shuffle(lines)
  (tmp_path / 'a.jsonl').write_text('\n'.join(lines[:20]) + '\n')
  (tmp_path / 'b.jsonl').write_text('\r\n'.join(lines[20:30]))
  with gzip.open(tmp_path / 'c.jsonl.gz', 'wt') as f:
    f.write('\n'.join(lines[30:]) + '\n')
  return [str(tmp_path / '*.jsonl'), str(tmp_path / '*.jsonl.gz')]


def test_same_records_dead_letters_and_count_as_read_records(tmp_path):
  patterns = _write(tmp_path)
  dead_of = beam.Map(lambda d: (d['reason'], d['raw']))
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = p | line_ranges.ReadLineChunks(
        patterns, 'jsonl', chunk_size=3, range_bytes=50)
    assert_that(chunks.main | beam.Map(len) | beam.combiners.Count.Globally(),
                lambda n: n[0] >= 40 // 3, label='chunked')
    assert_that(chunks.main | beam.FlatMap(lambda c: c), equal_to(ROWS),
                label='records')
    assert_that(chunks.dead_letter | 'Dead' >> dead_of,
                equal_to([('unparseable', b) for b in BAD]), label='dead')
    result = p.run()
  result.wait_until_finish()
  [count] = result.metrics().query(beam.metrics.MetricsFilter().with_name(
      sources.RECORDS))['counters']
  assert count.committed == len(ROWS) + len(BAD)

  with TestPipeline(runner='FnApiRunner') as p:
    reference = p | 'Reference' >> sources.ReadRecords(patterns, 'jsonl')
    assert_that(reference.main, equal_to(ROWS), label='records')
    assert_that(reference.dead_letter | 'Dead' >> dead_of,
                equal_to([('unparseable', b) for b in BAD]), label='dead')


def test_quiet_reads_only_records(tmp_path):
  patterns = _write(tmp_path)
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = p | line_ranges.ReadLineChunks(
        patterns, 'jsonl', range_bytes=64, quiet=True)
    assert_that(chunks.main | beam.FlatMap(lambda c: c), equal_to(ROWS))
    assert_that(chunks.dead_letter, equal_to([]), label='no dead letters')
    result = p.run()
  result.wait_until_finish()
  assert not result.metrics().query(beam.metrics.MetricsFilter().with_name(
      sources.RECORDS))['counters']


def test_text_lines_and_undecodable_bytes(tmp_path):
  (tmp_path / 'a.txt').write_bytes(b'first line\r\nsecond \xff line\n\nlast')
  with TestPipeline(runner='FnApiRunner') as p:
    chunks = p | line_ranges.ReadLineChunks(str(tmp_path / '*.txt'), 'text')
    assert_that(chunks.main | beam.FlatMap(lambda c: c),
                equal_to([{'text': 'first line'}, {'text': ''},
                          {'text': 'last'}]))
    # Not text: its bytes travel as base64, flagged, for an exact replay.
    assert_that(chunks.dead_letter | beam.Map(
        lambda d: (d['reason'], d['raw_encoding'],
                   base64.b64decode(d['raw']))),
                equal_to([('invalid_text', 'base64', b'second \xff line')]),
                label='dead')
