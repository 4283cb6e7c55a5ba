"""Erasure on a lake in object storage: after `erase` and `gc` no object of the bucket (chunks, log entries, a
published Iceberg copy) holds a byte of the erased rows, a second machine's cache drops its copies when it
refreshes, and a new cache reads every version without them (`udr.api.remote_upkeep`, `RemoteLog.drop_blobs`)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udr
from udr.log.format import BlobId, BlobKind
from udr.log.index import unframe_blob
from udr.remote.log import decode_entry
from udr.remote.store import ObjectStore, open_store

SECRET = "Kp4-remote-secret-Vz81"
ROWS = 30_000
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("x", pa.int64())])


def _objects_holding(store: ObjectStore, needle: str) -> list[str]:
    """Every object whose bytes hold `needle`: raw, inside a log entry's decoded blobs, or in a Parquet
    chunk's values."""
    found = []
    for info in store.list(""):
        raw = store.get(info.key)
        assert raw is not None
        texts = [raw]
        if info.key.startswith("log/"):
            entry = decode_entry(int(info.key.rpartition("/")[2]), raw)
            texts += [unframe_blob(BlobId(b), data, expect=BlobKind(data[1])) for b, data in entry.blobs.items()]
        elif info.key.startswith("chunks/"):
            texts.append(str(pq.read_table(io.BytesIO(raw)).to_pylist()).encode())
        if any(needle.encode() in text for text in texts):
            found.append(info.key)
    return found


def _files_holding(root: Path, needle: str) -> list[str]:
    return sorted(str(f.relative_to(root)) for f in root.rglob("*")
                  if f.is_file() and needle.encode() in f.read_bytes())


def test_erase_and_gc_purge_the_bucket_and_every_cache(url: str, caches: Path) -> None:
    store = open_store(url)
    with udr.open(url, cache=caches / "a") as a, udr.open(url, cache=caches / "b") as b:
        a.create_table("people", SCHEMA, primary_key=["id"])
        a.append("people", {"id": list(range(ROWS)), "x": list(range(ROWS)),
                            "name": [SECRET if i == 42 else f"n{i}" for i in range(ROWS)]})
        a.upsert("people", {"id": [42, 7], "name": [SECRET + "-v2", "seven"], "x": [1, 2]})
        a.publish_iceberg(f"{url}/iceberg")
        b.refresh()
        assert b.read("people", at=b.log(limit=None)[1].id).num_rows == ROWS  # b caches the chunk
        held = _objects_holding(store, SECRET)
        assert {k.split("/")[0] for k in held} == {"chunks", "log", "iceberg"}
        assert _files_holding(caches / "b", SECRET)

        a.erase("people", {"id": [42]}, reason="GDPR request 12")
        a.gc()
        assert _objects_holding(store, SECRET) == []
        assert _files_holding(caches / "a", SECRET) == []
        assert b.refresh() == 1
        assert _files_holding(caches / "b", SECRET) == []
        for commit in b.log(limit=None):
            if "people" in b.tables(at=commit.id):
                assert 42 not in b.read("people", at=commit.id).column("id").to_pylist()
        assert b.row_count("people") == ROWS - 1
        assert b.verify().ok
        # Later writes and gcs keep working on the purged log.
        b.upsert("people", {"id": [7], "name": ["seven again"], "x": [3]})
        assert a.refresh() == 1 and a.gc() >= 0
    with udr.open(url, cache=caches / "c", create=False) as c:  # a new machine replays the purged log
        assert c.row_count("people") == ROWS - 1
        assert c.query("select name from people where id = 7").to_pylist() == [{"name": "seven again"}]
        for commit in c.log(limit=None):
            if "people" in c.tables(at=commit.id):
                assert 42 not in c.read("people", at=commit.id).column("id").to_pylist()
        assert c.verify().ok


def test_a_reader_that_missed_an_erasure_is_told_to_refresh(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a, udr.open(url, cache=caches / "b") as b:
        a.create_table("people", SCHEMA, primary_key=["id"])
        a.append("people", {"id": list(range(ROWS)), "x": list(range(ROWS)),
                            "name": [SECRET if i == 42 else f"n{i}" for i in range(ROWS)]})
        assert b.refresh() == 2  # b holds the commits, but not yet the chunk file
        a.erase("people", {"id": [42]}, reason="request 13")
        a.gc()
        with pytest.raises(udr.StorageError, match=r"refresh\(\) and read again") as failed:
            b.read("people")
        assert failed.value.retryable is True
        assert b.refresh() == 1
        assert b.row_count("people") == ROWS - 1 and b.verify().ok
