"""Property-based tests of record parsing: JSON lines, line ranges, CSV.

Whatever bytes a file holds, each reader gives records or dead letters
(never an exception escaping the DoFn), and every line or row is counted
once: records + dead letters = what was read.
"""
import io
import itertools

from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.pvalue import TaggedOutput
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzz
from transforms.dead_letter import DEAD_LETTER
from transforms.io import line_ranges
from transforms.io import sinks
from transforms.io import sources


def _split(outputs):
  """(records, dead letters) of a DoFn's outputs; records may come in
  chunks (lists)."""
  records, dead = [], []
  for out in outputs:
    if isinstance(out, TaggedOutput):
      assert out.tag == DEAD_LETTER
      dead.append(out.value)
    elif isinstance(out, list):
      records.extend(out)
    else:
      records.append(out)
  return records, dead


@given(fuzz.json_lines)
def test_a_json_line_is_a_record_or_says_why_not(line):
  for form in (line, line.decode('utf-8', 'replace')):
    record, problem = sources.parse_json_line(form)
    assert (record is None) != (problem is None)
    if record is not None:
      assert isinstance(record, dict)
    else:
      reason, why = problem
      assert reason in (sources.UNPARSEABLE, sources.INVALID_TEXT) and why


@given(fuzz.json_lines)
@example(b'{"key": "k", "text": "\\ud800"}')
def test_an_accepted_json_line_can_be_written_back(line):
  record, _ = sources.parse_json_line(line)
  if record is not None:
    sinks.to_json(record).encode('utf-8')


_LINE_ENDS = st.sampled_from([b'\n', b'\r\n', b'\r', b''])


@given(st.lists(st.tuples(fuzz.json_lines, _LINE_ENDS), max_size=12),
       st.integers(1, 64))
def test_line_ranges_read_every_line_once_and_count_it(tmp_path_factory,
                                                       lines, range_bytes):
  data = b''.join(line + end for line, end in lines)
  path = tmp_path_factory.mktemp('lines') / 'f.jsonl'
  path.write_bytes(data)
  expected = line_ranges.split_lines(data)
  read = []
  outputs = []
  for _, start, end in line_ranges._ranges(  # pylint: disable=protected-access
      str(path), len(data), range_bytes):
    end = len(data) if end is None else end
    read += line_ranges.split_lines(
        line_ranges.read_range(io.BytesIO(data), start, end))
    fn = line_ranges._ReadRange('jsonl', 5, quiet=False)  # pylint: disable=protected-access
    outputs += list(fn.process((str(path), start, end)))
  assert read == expected
  records, dead = _split(outputs)
  assert len(records) + len(dead) == len(expected)
  assert all(d['reason'] in (sources.UNPARSEABLE, sources.INVALID_TEXT)
             for d in dead)


def _csv_outputs(tmp_path_factory, data):
  path = tmp_path_factory.mktemp('csv') / 'f.csv'
  path.write_bytes(data)
  readable = fileio.ReadableFile(FileMetadata(str(path), len(data)))
  parse = sources._ParseCsvFile()  # pylint: disable=protected-access
  parse.setup()
  return _split(parse.process(readable))


_CSV_CELLS = st.one_of(
    st.text(st.characters(codec='utf-8'), max_size=8),
    st.sampled_from(['"', '""', '"a,b"', ',', '\n', '\r\n', '"x\ny"']))


@st.composite
def csv_files(draw):
  """CSV files as writers (and people) make them: a header, rows with
  more or fewer cells, quotes, line breaks in cells; UTF-8 text."""
  header = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1,
                         max_size=4, unique=True))
  rows = draw(st.lists(st.lists(_CSV_CELLS, max_size=6), max_size=6))
  lines = [','.join(header)] + [','.join(row) for row in rows]
  return ('\n'.join(lines) + draw(st.sampled_from(['', '\n']))).encode(
      'utf-8', 'surrogatepass')


@given(csv_files())
def test_a_csv_file_of_text_gives_rows_or_dead_letters(tmp_path_factory,
                                                       data):
  records, dead = _csv_outputs(tmp_path_factory, data)
  for record in records:
    assert None not in record and None not in record.values()
  assert all(d['reason'] in (sources.UNPARSEABLE, sources.INVALID_TEXT)
             for d in dead)


@given(st.binary(max_size=80))
@example(b'a,b\n\xff,2\n')
@example(b'a,b\n"' + b'x' * 140_000 + b'",1\n')
def test_a_csv_file_of_any_bytes_gives_rows_or_dead_letters(tmp_path_factory,
                                                            data):
  _csv_outputs(tmp_path_factory, data)


@given(st.text(st.characters(codec='ascii', exclude_characters='",\r\n'),
               min_size=1, max_size=5), st.lists(st.integers(0, 9),
                                                 min_size=2, max_size=2))
@example('a', [1, 2])
def test_no_csv_cell_is_dropped(tmp_path_factory, name, cells):
  data = f'{name},{name}\n{cells[0]},{cells[1]}\n'.encode()
  records, dead = _csv_outputs(tmp_path_factory, data)
  kept = list(itertools.chain.from_iterable(r.values() for r in records))
  assert len(kept) == 2 or dead
