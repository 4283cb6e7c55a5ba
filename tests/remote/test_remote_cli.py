"""The CLI on a lake in object storage: `udr --lake s3://...` as a user would type it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import udr
from udr.cli import cli


def test_the_cli_works_on_a_remote_lake(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    source = tmp_path / "rows.csv"
    source.write_text("a,b\n1,2\n3,4\n")
    runner = CliRunner()

    def udr_cli(*args: str) -> str:
        result = runner.invoke(cli, ["--lake", url, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert f"{url} now holds an empty lake" in udr_cli("init")
    assert "2 inserted" in udr_cli("import", "t", str(source))
    assert "(2 rows)" in udr_cli("sql", "select * from t")
    assert "ok: 2 commits" in udr_cli("verify")
    assert f"published {url}/ice: t +1 snapshots" in udr_cli("publish", "iceberg", f"{url}/ice")
    assert "unpublished 1 table from" in udr_cli("unpublish", "iceberg", f"{url}/ice")
    assert (tmp_path / "xdg" / "udr").is_dir()  # the default cache
    with udr.open(url, cache=tmp_path / "elsewhere", create=False) as db:
        assert db.query("select sum(a) as s from t").to_pylist() == [{"s": 4}]


def test_the_cli_reports_a_missing_remote_lake_in_one_line(url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    result = CliRunner().invoke(cli, ["--lake", url, "log"])
    assert result.exit_code != 0
    assert "no lake at s3://" in result.output


def test_the_demo_runs_on_a_remote_lake(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    result = CliRunner().invoke(cli, ["demo", url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"udr --lake {url} log --graph" in result.output
    with udr.open(url, cache=tmp_path / "other", create=False) as db:
        assert "orders" in db.tables()
    again = CliRunner().invoke(cli, ["demo", url])
    assert again.exit_code != 0 and "already holds a lake" in again.output
