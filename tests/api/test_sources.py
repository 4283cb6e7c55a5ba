"""Importing from a Delta table, an Iceberg table, and Parquet directories and globs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udr


@pytest.fixture()
def delta(tmp_path: Path) -> Path:
    """A Delta table with three versions: create, append, overwrite."""
    path = tmp_path / "delta"
    deltalake.write_deltalake(path, pa.table({"id": [1, 2], "v": ["a", "b"]}))
    deltalake.write_deltalake(path, pa.table({"id": [3], "v": ["c"]}), mode="append")
    deltalake.write_deltalake(path, pa.table({"id": [1, 3], "v": ["A", "c"]}), mode="overwrite")
    return path


def _sorted(table: pa.Table) -> dict[str, list[object]]:
    columns: dict[str, list[object]] = table.sort_by("id").to_pydict()
    return columns


def test_a_delta_table_appends_its_latest_version(tmp_path: Path, delta: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.append("t", delta)
        assert _sorted(db.read("t")) == {"id": [1, 3], "v": ["A", "c"]}
        with db.transaction() as tx:
            tx.overwrite("t", udr.read_source(delta, version=0))
        assert _sorted(db.read("t")) == {"id": [1, 2], "v": ["a", "b"]}


def test_delta_history_lists_every_version_oldest_first(delta: Path) -> None:
    versions = udr.source_versions(delta)
    assert [v.version for v in versions] == [0, 1, 2]
    assert "Append" in versions[1].message and versions[0].time <= versions[2].time


def test_parquet_directories_and_globs_import_every_file(tmp_path: Path) -> None:
    (tmp_path / "pq" / "sub").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "pq" / "a.parquet")
    pq.write_table(pa.table({"id": [3]}), tmp_path / "pq" / "sub" / "b.parquet")
    with udr.open(tmp_path / "lake") as db:
        db.append("all", tmp_path / "pq")
        db.append("top", str(tmp_path / "pq" / "*.parquet"))
        assert _sorted(db.read("all")) == {"id": [1, 2, 3]}
        assert _sorted(db.read("top")) == {"id": [1, 2]}


def test_an_iceberg_table_imports_at_each_snapshot(tmp_path: Path) -> None:
    with udr.open(tmp_path / "origin") as origin:
        origin.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
        origin.append("t", {"id": [1, 2], "v": ["a", "b"]})
        origin.upsert("t", {"id": [2], "v": ["B"]})
        origin.publish_iceberg(tmp_path / "ice")
    versions = udr.source_versions(tmp_path / "ice" / "t")
    with udr.open(tmp_path / "lake") as db:
        for version in versions:
            db.overwrite("t", udr.read_source(tmp_path / "ice" / "t", version=version.version))
        assert _sorted(db.read("t")) == {"id": [1, 2], "v": ["a", "B"]}


def test_a_path_that_is_no_source_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        before = db.log()
        with pytest.raises(udr.UsageError, match="holds no Parquet file"):
            db.append("t", tmp_path)
        with pytest.raises(udr.UsageError, match="has no history"):
            udr.source_versions(tmp_path)
        assert db.log() == before and db.tables() == []


def test_cli_import_history_makes_one_commit_per_version_with_its_message(tmp_path: Path, delta: Path) -> None:
    lake = tmp_path / "lake"
    udr_cli = [sys.executable, "-m", "udr.cli", "--lake", str(lake)]
    subprocess.run([*udr_cli, "init", str(lake)], check=True, capture_output=True)
    done = subprocess.run([*udr_cli, "import", "t", str(delta), "--history", "--key", "id"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("version ") == 3
    with udr.open(lake) as db:
        log = db.log(table="t")
        assert [c.metadata["source.version"] for c in reversed(log)] == ["0", "1", "2"]
        assert "Overwrite" in log[0].message
        assert _sorted(db.read("t")) == {"id": [1, 3], "v": ["A", "c"]}
