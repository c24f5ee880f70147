"""Property-based tests of the alias table reader (alias_tables, into a
knowledge_graph.AliasTable).

Any TSV file gives an alias table or a ConfigError (a ValueError) naming
what is wrong (which `--alias_table` reports as one usage line); a table
links every alias only it holds to its row, and linking any mention gives a
URL of the table or None.
"""
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzz
from transforms.moderation import alias_tables
from transforms.moderation import knowledge_graph as kg

# A line starting with '#' is a comment, by the format; any other title.
titles = st.text(st.characters(codec='utf-8', exclude_characters='\t\n\r'),
                 max_size=12).filter(lambda t: not t.startswith('#'))
aliases = st.lists(st.text(st.characters(codec='utf-8',
                                         exclude_characters='\t\n\r|'),
                           max_size=12), max_size=3)
rows = st.lists(st.tuples(titles, aliases), max_size=6)


def _tsv(table_rows, header):
  lines = ['# people', 'wikipedia_title\taliases'] if header else []
  lines += [f'{title}\t{"|".join(names)}' for title, names in table_rows]
  return '\n'.join(lines) + '\n'


def _load(tmp_path_factory, data):
  path = tmp_path_factory.mktemp('aliases') / 'people.tsv'
  path.write_bytes(data)
  return alias_tables.AliasSource(str(path)).table()


@given(rows, st.booleans(), st.lists(fuzz.text, max_size=4))
def test_a_tsv_is_a_table_or_a_clear_error(tmp_path_factory, table_rows,
                                            header, mentions):
  try:
    table = _load(tmp_path_factory,
                  _tsv(table_rows, header).encode('utf-8', 'surrogatepass'))
  except ValueError as e:
    assert str(e)
    return
  # The reader strips the whitespace around a title, as around every cell.
  urls = {kg.WIKIPEDIA_PREFIX + title.strip() for title, _ in table_rows}
  for mention in mentions + [n for _, names in table_rows for n in names]:
    url = table.link(mention)
    assert url is None or url in urls


@given(st.binary(max_size=200))
def test_any_bytes_are_a_table_or_a_clear_error(tmp_path_factory, data):
  try:
    _load(tmp_path_factory, data)
  except ValueError as e:  # UnicodeDecodeError is one
    assert str(e)


@given(rows.filter(lambda r: len({t for t, _ in r}) == len(r)))
def test_an_explicit_alias_links_to_its_row(tmp_path_factory, table_rows):
  try:
    table = _load(tmp_path_factory, _tsv(table_rows, True).encode())
  except ValueError:
    return
  for title, names in table_rows:
    url = kg.WIKIPEDIA_PREFIX + title.strip()
    for name in names:
      found = table.candidates(name)
      if found and {c.url for c in found} == {url} and min(
          c.tier for c in found) == kg.FULL:
        assert table.link(name) == url, name
