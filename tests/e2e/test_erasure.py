"""Erasure: `db.erase` removes rows by key from every version, and after `gc` no byte of them is left."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import blake3
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import udr
from udr.log.format import DB_BLOBS, FORMAT_FILE, CommitId

SECRET = "Zq7-erase-me-Xw93kP"
ROWS = 40_000  # a Parquet chunk: snappy keeps a short unique string literally
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("x", pa.int64())])


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and needle in f.read_bytes())


def _ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


def _stored_blob(db: udr.Lake, blob: str) -> bytes:
    env = db._handle.ctx.log.env
    with env.read() as txn:
        stored = txn.get(blob.encode(), db=env.db(DB_BLOBS))
    assert stored is not None
    return bytes(stored)


@pytest.fixture
def history(db: udr.Lake) -> dict[str, str]:
    """A keyed table whose row 42 holds SECRET in a Parquet chunk, an upserted inline version, a before-image
    and a tagged version; row 7 is ordinary."""
    db.create_table("people", SCHEMA, primary_key=["id"])
    out = {"load": db.append("people", {"id": list(range(ROWS)), "x": list(range(ROWS)),
                                        "name": [SECRET if i == 42 else f"n{i}" for i in range(ROWS)]}).id}
    out["upsert"] = db.upsert("people", {"id": [42, 7], "name": [SECRET + "-v2", "seven"], "x": [1, 2]}).id
    db.tag("audit", out["upsert"])
    out["delete"] = db.delete("people", keys={"id": [7]}).id
    out["later"] = db.append("people", {"id": [ROWS + 1], "name": ["later"], "x": [0]}).id
    return out


def test_erase_removes_the_rows_from_every_version(db: udr.Lake, lake_path: Path, history: dict[str, str]) -> None:
    before = {name: db.read("people", at=cid) for name, cid in history.items()}
    assert _files_holding(lake_path, SECRET.encode())  # the secret is stored in plain bytes before
    commit = db.erase("people", {"id": [42]}, reason="GDPR request 17", author="dpo")
    assert (commit.author, commit.metadata["udr.erasure.reason"], commit.metadata["udr.erasure.table"]) == (
        "dpo", "GDPR request 17", "people")
    assert commit.metadata["udr.erasure.keys"] == blake3.blake3(b'{"id":42}').hexdigest()
    assert SECRET not in json.dumps(commit.metadata) and commit.tables["people"].deleted == 1
    for name, cid in history.items():
        now = db.read("people", at=cid)
        assert _ids(now) == [i for i in _ids(before[name]) if i != 42], name
        assert now.sort_by("id").equals(before[name].filter(pc.not_equal(before[name]["id"], 42)).sort_by("id"))
    assert db.query(f'SELECT count(*) AS n FROM "people@{history["upsert"]}" WHERE id = 42').column("n")[0].as_py() == 0
    feed = db.changes("people")
    gone = feed.filter(pc.equal(feed["id"], 42))
    assert gone.column("_change").to_pylist() == ["delete"] and gone.column("name").to_pylist() == [None]
    assert gone.column("_commit_id").to_pylist() == [commit.id]
    assert set(db.history("people", {"id": 42}).column("name").to_pylist()) <= {None}  # no version shows a value
    assert [c for c in db.history("people", {"id": 7}).column("_change").to_pylist()] == [
        "insert", "update_before", "update_after", "delete"]
    assert db.verify().ok


def test_after_gc_no_byte_of_the_erased_values_is_left(db: udr.Lake, lake_path: Path,
                                                       history: dict[str, str]) -> None:
    inline = db._handle.ctx.log.get_commit(CommitId(history["upsert"])).tables["people"]
    stored = [_stored_blob(db, inline.add[0].chunk), _stored_blob(db, inline.before or "")]
    db.erase("people", {"id": [42]}, reason="GDPR")
    assert db.gc() > 0
    assert _files_holding(lake_path, SECRET.encode()) == []
    for blob in stored:  # the encoded inline rows and before-image that held the secret, byte for byte
        assert _files_holding(lake_path, blob[-48:]) == []
    db.upsert("people", {"id": [1], "name": ["after"], "x": [5]})
    assert _files_holding(lake_path, stored[0][-48:]) == []
    report = db.verify()
    assert report.ok and report.expired > 0, report
    assert db.read("people", at="audit").num_rows == ROWS - 1


def test_erasing_twice_and_across_branches(db: udr.Lake, history: dict[str, str]) -> None:
    db.create_branch("side", at=history["upsert"])
    db.upsert("people", {"id": [3], "name": ["side"], "x": [3]}, branch="side")
    db.erase("people", {"id": [42]}, reason="first")
    db.erase("people", [{"id": 3}, {"id": 5}], reason="second", branch="side")
    db.gc()
    for ref in ("main", "side", history["load"], history["upsert"]):
        assert not {3, 5, 42} & set(_ids(db.read("people", at=ref))) if ref != "side" else \
            not {3, 5, 42} & set(_ids(db.read("people", branch="side")))
    assert db.verify().ok


def test_bad_erasures_change_nothing(db: udr.Lake, lake_path: Path, history: dict[str, str],
                                     disk_state: Callable[[Path], dict[str, str]]) -> None:
    db.create_table("loose", pa.schema([("v", pa.int64())]))
    state = disk_state(lake_path)
    with pytest.raises(udr.KeyViolation):
        db.erase("loose", {"v": [1]}, reason="r")
    with pytest.raises(udr.UsageError):
        db.erase("people", {"name": [SECRET]}, reason="r")
    with pytest.raises(udr.UsageError):
        db.erase("people", {"id": [42]}, reason=" ")
    with pytest.raises(udr.TableNotFound):
        db.erase("nobody", {"id": [42]}, reason="r")
    with pytest.raises(udr.SchemaError):
        db.erase("people", {"id": ["forty-two"]}, reason="r")
    with pytest.raises(udr.UsageError):
        db.erase("people", {"id": pa.array([], pa.int64())}, reason="r")
    assert disk_state(lake_path) == state


def test_a_transaction_staged_before_an_erasure_cannot_resurrect_rows(db: udr.Lake, history: dict[str, str]) -> None:
    elsewhere = db.transaction()
    elsewhere.delete("people", keys={"id": [1]})
    changer = db.transaction()
    changer.upsert("people", {"id": [42], "name": [SECRET + "-v3"], "x": [3]})
    db.erase("people", {"id": [42]}, reason="r")
    elsewhere.commit()  # rebased onto the erasure: re-applied on the rewritten chunks
    with pytest.raises(udr.ConflictError, match="42"):  # it changed a row the erasure removed
        changer.commit()
    ids = _ids(db.read("people"))
    assert 42 not in ids and 1 not in ids


def test_the_erased_lake_is_format_3_or_newer_and_reopens(lake_path: Path, history: dict[str, str],
                                                          db: udr.Lake) -> None:
    db.erase("people", {"id": [42]}, reason="r")
    assert json.loads((lake_path / FORMAT_FILE).read_text())["version"] >= 3
    with udr.open(lake_path) as again:
        assert 42 not in _ids(again.read("people", at=history["load"]))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_subscriber_gets_the_erasure_as_a_delete(db: udr.Lake, history: dict[str, str]) -> None:
    async with db.subscribe("people", start="latest") as sub:
        db.erase("people", {"id": [42]}, reason="r")
        with anyio.fail_after(10):
            batch = await sub.__anext__()
    assert batch.changes.column("_change").to_pylist() == ["delete"]
    assert batch.changes.column("id").to_pylist() == [42] and batch.changes.column("name").to_pylist() == [None]


def test_erasing_after_retention_expired_and_collected_history(db: udr.Lake, lake_path: Path,
                                                               history: dict[str, str]) -> None:
    db.set_retention(keep_commits=1)
    db.expire()
    db.gc()
    commit = db.erase("people", {"id": [42]}, reason="after expiry")
    db.gc()
    assert 42 not in _ids(db.read("people")) and 42 not in _ids(db.read("people", at="audit"))
    with pytest.raises(udr.Expired):
        db.read("people", at=history["load"])
    assert _files_holding(lake_path, SECRET.encode()) == []
    assert db.changes("people", since=history["later"]).column("_commit_id").to_pylist() == [commit.id]
    assert db.verify().ok


@pytest.mark.parametrize(("table", "branch"), [("other", "main"), ("people", "main"), ("people", "side")])
def test_a_write_landing_during_an_erasure(db: udr.Lake, history: dict[str, str], table: str, branch: str) -> None:
    """Injected between the erasure's read of the history and its commit: a write to another table lets the
    erasure land on top of it; a write to the erased table makes it refuse (nothing erased, retry works)."""
    from udr.api import erasure

    original = erasure._live_matches
    db.create_branch("side")

    def live_matches_then_write(*args: object, **kwargs: object) -> pa.Table:
        db.append(table, {"id": [ROWS + 7], "name": ["racer"], "x": [1]}, branch=branch)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    erasure._live_matches = live_matches_then_write
    try:
        if table == "people":
            with pytest.raises(udr.ConflictError, match="changed" if branch == "side" else "moved"):
                db.erase("people", {"id": [42]}, reason="r")
            assert 42 in _ids(db.read("people", at=history["load"]))
        else:
            commit = db.erase("people", {"id": [42]}, reason="r")
            assert db.commit_info(commit.parents[0]).message == "append to other"
    finally:
        erasure._live_matches = original
    db.erase("people", {"id": [42]}, reason="r")
    assert 42 not in _ids(db.read("people", at=history["load"]))
    assert db.gc() > 0 and db.verify().ok
