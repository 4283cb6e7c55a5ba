"""Iceberg publishing of a lake in object storage into the same bucket, read back by pyiceberg from the S3
server: at every snapshot it reads what UDR reads at the snapshot's commit, after new commits, from a second
machine, and after an erasure (`udr.remote.publishing`, `udr.api.publishing`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.table import StaticTable
from remote_helpers import S3, bucket_keys

import udr

BIG = 20_000
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def _table(s3: S3, location: str) -> StaticTable:
    return StaticTable.from_metadata(location, properties={
        "s3.endpoint": s3.endpoint, "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
        "s3.region": "us-east-1"})


def _bag(table: pa.Table) -> Counter[tuple[object, ...]]:
    return Counter(zip(table.column("id").to_pylist(), table.column("name").to_pylist()))


def _check_every_snapshot(s3: S3, db: udr.Lake, location: str) -> StaticTable:
    """Assert pyiceberg reads, at every snapshot, the rows UDR reads at its commit; return the table."""
    ice = _table(s3, location)
    assert ice.metadata.snapshots
    for snap in ice.metadata.snapshots:
        assert snap.summary is not None
        expected = db.read("people", at=snap.summary["udr.commit"])
        assert _bag(ice.scan(snapshot_id=snap.snapshot_id).to_arrow()) == _bag(expected)
    return ice


def test_a_remote_lake_publishes_iceberg_into_its_bucket(url: str, caches: Path, s3_server: S3) -> None:
    dest = f"{url}/iceberg"
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("people", SCHEMA, primary_key=["id"])
        a.append("people", {"id": list(range(BIG)), "name": [f"n{i}" for i in range(BIG)]})
        a.upsert("people", {"id": [1, BIG], "name": ["one", "new"]})  # inline rows: a copy is uploaded
        report = a.publish_iceberg(dest)
        assert report.dest == dest and report.snapshots == {"people": 3}
        first = _check_every_snapshot(s3_server, a, f"{dest}/people")
        # Zero copy: the data files are the lake's chunk objects, but for the copy of inline rows, which the
        # destination owns.
        paths = sorted(f.file.file_path for f in first.scan().plan_files())
        assert len(paths) == 2 and paths[0].startswith(f"{url}/chunks/")
        assert paths[1].startswith(f"{dest}/people/data/inline-")
        a.delete("people", "id < 10")
        assert a.publish_iceberg(dest).snapshots == {"people": 1}
        assert a.publish_iceberg(dest).files_written == 0  # idempotent
        _check_every_snapshot(s3_server, a, f"{dest}/people")
    with udr.open(url, cache=caches / "b", create=False) as b:
        b.append("people", {"id": [BIG + 1], "name": ["from b"]})
        # The tables name the lake by its URL, not by a machine's cache: b continues a's history.
        assert b.publish_iceberg(dest).snapshots == {"people": 1}
        ice = _check_every_snapshot(s3_server, b, f"{dest}/people")
        assert len(ice.metadata.snapshots) == 5
        assert ice.scan().to_arrow().num_rows == b.row_count("people")
        assert b.unpublish_iceberg(dest) == ["people"]
    assert not [k for k in bucket_keys(s3_server, url) if k.startswith("iceberg/")]


def test_an_erasure_republishes_the_bucket_copy(url: str, caches: Path, s3_server: S3) -> None:
    dest = f"{url}/iceberg"
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("people", SCHEMA, primary_key=["id"])
        a.append("people", {"id": list(range(BIG)), "name": [f"n{i}" for i in range(BIG)]})
        a.upsert("people", {"id": [42], "name": ["secret"]})
        a.publish_iceberg(dest)
        before = {s.snapshot_id for s in _table(s3_server, f"{dest}/people").metadata.snapshots}
        a.erase("people", {"id": [42]}, reason="request 7")
        ice = _check_every_snapshot(s3_server, a, f"{dest}/people")
        assert before < {s.snapshot_id for s in ice.metadata.snapshots}
        for snap in ice.metadata.snapshots:
            assert 42 not in ice.scan(snapshot_id=snap.snapshot_id).to_arrow().column("id").to_pylist()


def test_publishing_into_a_lake_s_own_storage_is_refused(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.append("t", {"x": [1]})
        with pytest.raises(udr.UsageError, match="own storage"):
            a.publish_iceberg(f"{url}/chunks")


def _people(db: udr.Lake) -> None:
    db.create_table("people", SCHEMA, primary_key=["id"])
    db.append("people", {"id": list(range(BIG)), "name": [f"n{i}" for i in range(BIG)]})
    db.upsert("people", {"id": [1, 42], "name": ["one", "secret"]})  # inline rows


def test_a_remote_lake_publishes_into_a_directory_with_copies_of_its_chunks(
        url: str, caches: Path, tmp_path: Path, s3_server: S3) -> None:
    dest = tmp_path / "ice"
    with udr.open(url, cache=caches / "a") as a:
        _people(a)
        assert a.publish_iceberg(dest).snapshots == {"people": 3}
        a.delete("people", "id < 10")
        assert a.publish_iceberg(dest).snapshots == {"people": 1}
        ice = _check_every_snapshot(s3_server, a, str(dest / "people"))
        # The data files are the destination's own copies: a reader needs neither the bucket nor the cache.
        paths = {f.file.file_path for f in ice.scan().plan_files()}
        assert len(paths) == 2 and all(p.startswith(f"file://{dest}/people/data/") for p in paths)
        a.erase("people", {"id": [42]}, reason="request 8")  # republishes the directory too
        ice = _check_every_snapshot(s3_server, a, str(dest / "people"))
        for snap in ice.metadata.snapshots:
            assert 42 not in ice.scan(snapshot_id=snap.snapshot_id).to_arrow().column("id").to_pylist()
        assert a.unpublish_iceberg(dest) == ["people"]
    assert not list((dest / "people").rglob("*.parquet"))


def test_a_local_lake_publishes_into_object_storage_with_copies_of_its_chunks(
        url: str, tmp_path: Path, s3_server: S3) -> None:
    dest = f"{url}/iceberg"
    with udr.open(tmp_path / "lake") as db:
        _people(db)
        assert db.publish_iceberg(dest).snapshots == {"people": 3}
        assert db.publish_iceberg(dest).files_written == 0  # idempotent
        ice = _check_every_snapshot(s3_server, db, f"{dest}/people")
        paths = {f.file.file_path for f in ice.scan().plan_files()}
        assert len(paths) == 2 and all(p.startswith(f"{dest}/people/data/") for p in paths)
        assert db.unpublish_iceberg(dest) == ["people"]
    assert not [k for k in bucket_keys(s3_server, url) if k.startswith("iceberg/")]
