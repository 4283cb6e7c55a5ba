"""`udr.open`: creating a lake, refusing to create one (`create=False`), refusing URLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import udr


def test_open_creates_a_missing_lake_by_default(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        assert db.branches().keys() == {"main"}
    assert (tmp_path / "lake" / "FORMAT").is_file()


def test_open_without_create_refuses_a_missing_lake_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "typo"
    with pytest.raises(udr.LakeNotFound, match=r"no lake at .*typo; run `udr init .*typo`"):
        udr.open(path, create=False)
    assert not path.exists()


def test_open_without_create_opens_an_existing_lake(tmp_path: Path) -> None:
    udr.open(tmp_path).close()
    with udr.open(tmp_path, create=False) as db:
        assert "main" in db.branches()


@pytest.mark.parametrize("url", ["http://host/l", "https://host/l", "file:///tmp/lake", "ftp://host/l"])
def test_open_refuses_unsupported_urls_before_touching_disk(url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(udr.UsageError, match=r"cannot open .*udr reads lakes from s3://"):
        udr.open(url)
    assert list(tmp_path.iterdir()) == []


def test_open_memory_gives_a_fresh_lake_in_memory_that_is_gone_once_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a lake directory named ":memory:" would appear here
    first, second = udr.open(":memory:"), udr.open(":memory:")
    try:
        assert repr(first) == "udr.Lake(':memory:')"
        first.append("t", {"a": [1, 2, 3]})
        big = {"a": list(range(100_000))}  # big enough for a chunk file
        first.append("t", big)
        assert list(first._handle.ctx.log.chunks.all_ids())  # a Parquet chunk file, in the scratch directory
        assert first.query("SELECT count(*) AS n, sum(a) AS s FROM t").to_pylist() == [
            {"n": 100_003, "s": sum(range(100_000)) + 6}]
        assert first.read("t", at="main~1").num_rows == 3
        assert "t" not in second.tables()  # each ":memory:" lake is its own
        assert first.verify().ok
    finally:
        first.close()
        second.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(udr.UdrError, match="closed"):
        first.read("t")


def test_reading_and_writing_rows_never_loads_sqlglot(tmp_path: Path) -> None:
    """Only SQL that writes needs sqlglot: its ~16k objects would make every full garbage collection of a
    reading or streaming process tens of milliseconds longer (W4's worst snapshot open, W7's p99)."""
    probe = (
        "import sys, udr\n"
        f"db = udr.open({str(tmp_path / 'lake')!r})\n"
        "db.append('t', {'a': [1, 2]})\n"
        "with db.transaction() as tx:\n"
        "    tx.append('t', {'a': [3]})\n"
        "db.read('t'); db.tables(at='main~1'); db.sql('SELECT count(*) FROM t').fetchall()\n"
        "print('sqlglot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
