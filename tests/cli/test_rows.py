"""`--limit`, `--format` and `-o` on every command that prints rows (`sql`, `changes`, `history`, `diff`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import Udr, cells

import udr
from udr.cli.rows import PAGE


@pytest.fixture
def udr_cli(lake_path: Path) -> Udr:
    """A lake whose keyed `t` table got `PAGE + 5` rows in one commit, then had row 0 changed."""
    with udr.open(lake_path) as db:
        db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
        db.append("t", {"id": [0], "v": ["x"]}, message="first")
        db.upsert("t", {"id": list(range(PAGE + 5)), "v": ["a"] * (PAGE + 5)}, message="load")
        db.upsert("t", {"id": [0], "v": ["b"]}, message="fix")
    return Udr(lake_path)


def test_the_table_view_prints_a_page_and_says_how_many_rows_it_left_out(udr_cli: Udr) -> None:
    out = udr_cli.ok("changes", "t")
    assert len(cells(out)) == PAGE
    assert f"({PAGE:,} rows; more rows; use --limit N" in out


def test_limit_cuts_every_format_and_says_so_on_stderr(udr_cli: Udr) -> None:
    out = udr_cli.ok("changes", "t", "--limit", "3")
    assert len(cells(out)) == 3 and "more rows" in out
    result = udr_cli.run("changes", "t", "--limit", "3", "--format", "json")
    assert len(json.loads(result.stdout)) == 3
    assert "more rows left out by --limit 3" in result.stderr
    assert len(cells(udr_cli.ok("changes", "t", "--limit", "0"))) == PAGE + 9
    assert len(cells(udr_cli.ok("sql", "SELECT * FROM t", "--limit", "2"))) == 2
    assert len(cells(udr_cli.ok("diff", "main~1", "main", "--table", "t", "--limit", "1"))) == 1
    assert "--limit" in udr_cli.fails("changes", "t", "--limit", "-1", code=2)


def test_csv_and_json_write_every_row_with_whole_commit_ids(udr_cli: Udr, lake_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(udr_cli.ok("changes", "t", "--format", "csv"))))
    assert len(rows) == PAGE + 9
    with udr.open(lake_path) as db:
        head = db.resolve("main")
    assert rows[-1]["_commit_id"] == head and rows[-1]["_change"] == "update_after"
    every = json.loads(udr_cli.ok("changes", "t", "--format", "json"))
    assert len(every) == PAGE + 9 and every[-1]["_commit_time"].startswith("20")


def test_parquet_needs_an_output_file_and_writes_it_whole(udr_cli: Udr, tmp_path: Path) -> None:
    assert "-o/--output FILE" in udr_cli.fails("changes", "t", "--format", "parquet", code=2)
    target = tmp_path / "changes.parquet"
    assert udr_cli.ok("changes", "t", "--format", "parquet", "-o", str(target)) == ""
    written = pq.read_table(target)
    assert written.num_rows == PAGE + 9 and len(written.column("_commit_id")[0].as_py()) > 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changes.parquet", "lake"]


def test_history_and_diff_take_the_same_options(udr_cli: Udr, tmp_path: Path) -> None:
    versions = list(csv.DictReader(io.StringIO(udr_cli.ok("history", "t", "--key", "id=0", "--format", "csv"))))
    assert [row["v"] for row in versions if row["_change"] != "update_before"] == ["x", "a", "b"]
    shown = cells(udr_cli.ok("history", "t", "--key", "id=0", "--limit", "1"))
    assert len(shown) == 1 and shown[0][0] == "insert"
    target = tmp_path / "diff.csv"
    udr_cli.ok("diff", "main~2", "main", "-o", str(target), "--format", "csv")
    assert list(csv.DictReader(io.StringIO(target.read_text()))) == [
        {"table": "t", "inserted": str(PAGE + 4), "updated": "1", "deleted": "0"}]
