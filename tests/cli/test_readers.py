"""Reading input files for `udr import`: a malformed CSV is one error line naming the line, and nothing is
written."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import Udr, cells

import udr
from udr.cli.common import Failure
from udr.cli.readers import check_quotes


@pytest.fixture
def udr_cli(lake_path: Path) -> Udr:
    with udr.open(lake_path) as db:
        db.append("t", {"a": [0], "b": ["zero"]})
    return Udr(lake_path)


def test_an_unterminated_quote_names_its_line_and_writes_nothing(udr_cli: Udr, lake_path: Path,
                                                                 tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('a,b\n1,"x\n2,y\n3,z\n')
    with udr.open(lake_path) as db:
        before = db.resolve("main")
    line = udr_cli.fails("import", "t", str(bad))
    assert "line 2" in line and "never closes" in line and "bad.csv" in line
    assert "line 2" in udr_cli.fails("import", "fresh", str(bad))
    with udr.open(lake_path) as db:
        assert db.resolve("main") == before and db.tables() == ["t"] and db.row_count("t") == 1


def test_quotes_that_pair_up_import_as_written(udr_cli: Udr, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text('a,b\n1,"say ""hi"", then go"\n2,plain\n')
    assert "2 inserted" in udr_cli.ok("import", "t", str(good))
    shown = cells(udr_cli.ok("sql", "SELECT b FROM t WHERE a = 1"))
    assert shown == [['say "hi", then go']]


@pytest.mark.parametrize(("text", "line"), [
    ('a\n"one\n', 2),
    ('a,b\n"x","y"\n"z,w\n"ok"\n', 3),
    ('a\n"spans\ntwo lines"\n"open\n', 4),
])
def test_check_quotes_names_the_line_where_the_open_quote_starts(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(Failure, match=f"line {line} never closes"):
        check_quotes(path)


def test_check_quotes_accepts_quoted_newlines_and_doubled_quotes(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('a,b\n"two\nlines","a ""quoted"" word"\n')
    check_quotes(path)
