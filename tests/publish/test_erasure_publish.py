"""Erasure reaches published Iceberg copies: every snapshot reads without the erased rows, and after `gc` no
file of the lake or of the destination holds a byte of them (`udr.publish.iceberg`, `Lake.erase`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from iceberg_readers import check_every_snapshot
from pyiceberg.table import StaticTable

import udr

SECRET = "Kp4-published-secret-Vz81"
ROWS = 30_000  # a Parquet chunk: snappy keeps a short unique string literally
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("x", pa.int64())])


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and needle in f.read_bytes())


def _history(db: udr.Lake) -> None:
    """Row 42 holds SECRET in a Parquet chunk, then in an inline upsert; row 7 is ordinary."""
    db.create_table("people", SCHEMA, primary_key=["id"])
    db.append("people", {"id": list(range(ROWS)), "x": list(range(ROWS)),
                         "name": [SECRET if i == 42 else f"n{i}" for i in range(ROWS)]})
    db.upsert("people", {"id": [42, 7], "name": [SECRET + "-v2", "seven"], "x": [1, 2]})
    db.append("other", {"k": [1, 2]})


def test_an_erasure_is_republished_and_gc_leaves_no_byte_of_it(tmp_path: Path) -> None:
    lake, dest = tmp_path / "lake", tmp_path / "iceberg"
    with udr.open(lake) as db:
        _history(db)
        db.publish_iceberg(dest)
        assert _files_holding(lake, SECRET.encode())
        snapshots = {s.snapshot_id for s in StaticTable.from_metadata(str(dest / "people")).metadata.snapshots}
        db.erase("people", {"id": [42]}, reason="GDPR request 9")
        ice = StaticTable.from_metadata(str(dest / "people"))
        # Every earlier snapshot is still there (same ids), now reading without row 42, plus the erasure's.
        assert snapshots < {s.snapshot_id for s in ice.metadata.snapshots}
        assert check_every_snapshot(db, dest, "people", with_polars=False) == len(snapshots) + 1
        for snap in ice.metadata.snapshots:
            assert 42 not in ice.scan(snapshot_id=snap.snapshot_id).to_arrow().column("id").to_pylist()
        assert check_every_snapshot(db, dest, "other", with_polars=False) == 1
        db.gc()
        assert _files_holding(lake, SECRET.encode()) == []
        assert _files_holding(dest, SECRET.encode()) == []
        assert check_every_snapshot(db, dest, "people", with_polars=False) == len(snapshots) + 1
        assert db.verify().ok
        # Later publishes stay incremental on the rebuilt history.
        db.upsert("people", {"id": [7], "name": ["seven again"], "x": [3]})
        assert db.publish_iceberg(dest).snapshots == {"people": 1, "other": 0}
        check_every_snapshot(db, dest, "people", with_polars=False)


def test_an_unpublished_or_deleted_destination_is_not_recreated(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with udr.open(lake) as db:
        _history(db)
        db.publish_iceberg(tmp_path / "gone", ["people"])
        db.publish_iceberg(tmp_path / "unpublished", ["people"])
        db.unpublish_iceberg(tmp_path / "unpublished")
        for path in (tmp_path / "gone").rglob("*"):
            if path.is_file():
                path.unlink()
        for path in sorted((tmp_path / "gone").rglob("*"), reverse=True):
            path.rmdir()
        (tmp_path / "gone").rmdir()
        db.erase("people", {"id": [42]}, reason="GDPR")
        assert not (tmp_path / "gone").exists()
        assert not (tmp_path / "unpublished" / "people").exists()
