"""`udr.clone`, `udr.push`, `udr.pull` between local lakes and lakes in object storage."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import udr
from udr.cli import cli

BIG = 20_000


def _rows(start: int, n: int) -> pa.Table:
    return pa.table({"k": pa.array(range(start, start + n), pa.int64()), "v": pa.array(range(n), pa.int64())})


def _signature(db: udr.Lake) -> tuple[object, ...]:
    commits = [c.id for c in db.log(limit=None)]
    rows = {t: db.query(f"select * from {t} order by all").to_pylist() for t in db.tables()}
    return commits, db.branches(), db.tags(), rows


def test_clone_local_to_remote_to_local_keeps_every_commit_id(url: str, tmp_path: Path) -> None:
    with udr.open(tmp_path / "src") as src:
        src.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]), primary_key=["k"])
        first = src.append("t", _rows(0, BIG))
        src.create_branch("dev")
        src.append("t", _rows(BIG, 5), branch="dev")
        src.tag("v1", first.id)
        want = _signature(src)
    assert udr.clone(tmp_path / "src", url) == 4  # the root commit, create, two appends
    with udr.open(url, cache=tmp_path / "cache", create=False) as remote:
        assert _signature(remote) == want
    assert udr.clone(url, tmp_path / "back") == 4
    with udr.open(tmp_path / "back", create=False) as back:
        assert _signature(back) == want
        assert back.verify().problems == []
    with pytest.raises(udr.UsageError, match="already holds a lake"):
        udr.clone(tmp_path / "src", url)


def test_push_and_pull_fast_forward_and_refuse_a_diverged_log(url: str, tmp_path: Path) -> None:
    with udr.open(tmp_path / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
    udr.clone(tmp_path / "a", url)
    udr.clone(url, tmp_path / "b")
    with udr.open(tmp_path / "a") as a:
        a.append("t", _rows(0, BIG))
    assert udr.push(tmp_path / "a", url) == 1
    assert udr.push(tmp_path / "a", url) == 0
    assert udr.pull(tmp_path / "b", url) == 1
    with udr.open(tmp_path / "a") as a, udr.open(tmp_path / "b") as b:
        assert _signature(a) == _signature(b)
        b.append("t", _rows(0, 1))
        a.append("t", _rows(1, 1))
    assert udr.push(tmp_path / "b", url) == 1
    with pytest.raises(udr.ConflictError, match="diverged"):
        udr.push(tmp_path / "a", url)
    with udr.open(url, cache=tmp_path / "cache") as remote:
        assert remote.row_count("t") == BIG + 1  # b's push landed whole, a's was refused


def test_the_cli_clones_and_pushes(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with udr.open(tmp_path / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
    runner = CliRunner()
    result = runner.invoke(cli, ["clone", str(tmp_path / "a"), url], catch_exceptions=False)
    assert result.exit_code == 0 and "(2 commits)" in result.output
    with udr.open(tmp_path / "a") as a:
        a.append("t", _rows(0, 3))
    result = runner.invoke(cli, ["--lake", str(tmp_path / "a"), "push", url, "main"], catch_exceptions=False)
    assert result.exit_code == 0 and "pushed 1 commits" in result.output
    result = runner.invoke(cli, ["--lake", url, "sql", "select count(*) as n from t"], catch_exceptions=False)
    assert result.exit_code == 0 and "3" in result.output
