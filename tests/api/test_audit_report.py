"""Log search (`db.log` filters) and the audit report (`db.audit`): commits and ref moves of a window, and a
verification of that stretch of the hash chain that fails when a commit record or a chunk was altered."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import lmdb
import pyarrow as pa
import pytest

import udr
from udr.log.format import DB_COMMITS, LOG_DIR, MAX_DBS, BlobKind
from udr.log.index import frame_blob, unframe_blob


@pytest.fixture
def ledger(db: udr.Lake) -> tuple[udr.Lake, dict[str, udr.Commit]]:
    """Four commits on main by two authors with metadata, a branch with one commit, pauses between them."""
    made: dict[str, udr.Commit] = {}
    made["load"] = db.append("t", pa.table({"x": [1, 2]}), author="ann", message="initial load")
    time.sleep(0.01)
    with db.transaction(author="bob", message="import batch 7", metadata={"ticket": "T-1", "src": "csv"}) as tx:
        tx.append("t", pa.table({"x": [3]}))
        tx.append("u", pa.table({"y": [1]}))
    assert tx.committed is not None
    made["import"] = tx.committed
    time.sleep(0.01)
    with db.transaction(author="ann", message="fix batch 7", metadata={"ticket": "T-1"}) as tx:
        tx.delete("t", "x = 3")
    assert tx.committed is not None
    made["fix"] = tx.committed
    db.create_branch("dev")
    made["dev"] = db.append("u", pa.table({"y": [2]}), branch="dev", author="cy", message="dev work")
    time.sleep(0.01)
    made["last"] = db.append("t", pa.table({"x": [4]}), author="bob", message="late import")
    return db, made


def _ids(commits: list[udr.Commit]) -> list[str]:
    return [c.id for c in commits]


def test_log_filters(ledger: tuple[udr.Lake, dict[str, udr.Commit]]) -> None:
    db, c = ledger
    assert _ids(db.log(author="bob")) == [c["last"].id, c["import"].id]
    assert _ids(db.log(grep="batch 7")) == [c["fix"].id, c["import"].id]
    assert _ids(db.log(grep="Batch")) == []  # case-sensitive
    assert _ids(db.log(metadata={"ticket": "T-1"})) == [c["fix"].id, c["import"].id]
    assert _ids(db.log(metadata={"ticket": "T-1", "src": "csv"})) == [c["import"].id]
    assert _ids(db.log(table="u", author="bob")) == [c["import"].id]
    assert _ids(db.log("dev", author="cy")) == [c["dev"].id]
    assert _ids(db.log(author="bob", limit=1)) == [c["last"].id]


def test_log_window_by_ref_and_by_time(ledger: tuple[udr.Lake, dict[str, udr.Commit]]) -> None:
    db, c = ledger
    # Refs: since excluded, until included (as `changes`).
    assert _ids(db.log(since=c["load"].id, until=c["fix"].id)) == [c["fix"].id, c["import"].id]
    assert _ids(db.log(since="main~1")) == [c["last"].id]
    # Times: both ends included; datetimes and ISO strings alike.
    at = c["import"].time
    assert _ids(db.log(since=at, until=c["fix"].time)) == [c["fix"].id, c["import"].id]
    iso = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert _ids(db.log(since=iso, author="ann")) == [c["fix"].id]
    assert _ids(db.log(until=(at - timedelta(microseconds=1)).isoformat())) == [c["load"].id, db.log()[-1].id]
    assert db.log(since=datetime.now(timezone.utc) + timedelta(days=1)) == []
    with pytest.raises(udr.RefNotFound):
        db.log(since="no-such-ref")
    with pytest.raises(udr.UsageError):
        db.log(until="2026-13-45")


def test_the_report_lists_the_window_and_verifies(ledger: tuple[udr.Lake, dict[str, udr.Commit]]) -> None:
    db, c = ledger
    report = db.audit(since=c["load"].id, until=c["dev"].id)
    assert _ids(report.commits) == [c["import"].id, c["fix"].id, c["dev"].id]
    first = report.commits[0]
    assert (first.author, first.message, first.metadata) == ("bob", "import batch 7", {"ticket": "T-1", "src": "csv"})
    assert first.tables == {"t": udr.TableChange(1, 0, 0), "u": udr.TableChange(1, 0, 0)}
    assert [(m.name, m.action) for m in report.ref_moves] == [
        ("main", "commit"), ("main", "commit"), ("dev", "create"), ("dev", "commit")]
    assert report.ok and report.verification.commits_checked == 3
    assert report.verdict.startswith("VERIFIED")
    assert _ids(db.audit(table="u").commits) == [c["import"].id, c["dev"].id]
    everything = db.audit()
    assert everything.verification.commits_checked == len(everything.commits) == 6
    assert (everything.since, everything.until) == (None, None)


def test_a_reset_appears_in_the_report_with_the_commits_it_hid(ledger: tuple[udr.Lake, dict[str, udr.Commit]]) -> None:
    db, c = ledger
    db.reset("main", c["fix"].id)
    report = db.audit(since=c["fix"].time + timedelta(microseconds=1))
    assert c["last"].id in _ids(report.commits)  # hidden from main, still audited
    assert report.ref_moves[-1].action == "reset" and "hiding" in report.ref_moves[-1].message


def _rewrite_commit(lake: Path, cid: str, edit: Callable[[bytes], bytes]) -> None:
    """Change a commit record's bytes in LMDB directly, as an attacker with the files would."""
    env = lmdb.open(str(lake / LOG_DIR), max_dbs=MAX_DBS)
    try:
        commits = env.open_db(DB_COMMITS)
        with env.begin(write=True) as txn:
            stored = txn.get(cid.encode(), db=commits)
            assert stored is not None
            canonical = unframe_blob(cid, stored, expect=BlobKind.COMMIT)
            _, tampered = frame_blob(BlobKind.COMMIT, edit(canonical))
            txn.put(cid.encode(), tampered, db=commits)
    finally:
        env.close()


def test_a_rewritten_commit_record_fails_the_verdict(lake_path: Path) -> None:
    with udr.open(lake_path) as db:
        db.append("t", pa.table({"x": [1]}), author="ann")
        paid = db.append("t", pa.table({"x": [100]}), author="ann", message="pay 100")
        db.append("t", pa.table({"x": [2]}), author="ann")
        assert db.audit().ok
    _rewrite_commit(lake_path, paid.id, lambda raw: raw.replace(b"pay 100", b"pay 900"))
    with udr.open(lake_path) as db:
        report = db.audit(since=paid.parents[0])
        assert not report.ok and report.verdict.startswith("FAILED")
        assert any(paid.id in problem for problem in report.verification.problems)
        # A window that ends before the altered commit does not vouch for it, and still verifies.
        assert db.audit(until=paid.parents[0]).ok


def test_a_rewritten_chunk_fails_the_verdict(lake_path: Path, make_big: Callable[..., pa.Table],
                                             chunk_files: Callable[[Path], list[Path]]) -> None:
    with udr.open(lake_path) as db:
        start = db.resolve("main")
        made = db.append("big", make_big())
        assert db.audit(since=start).ok
    (chunk,) = chunk_files(lake_path)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with udr.open(lake_path) as db:
        report = db.audit(since=start)
        assert not report.ok
        assert any("big" in problem and made.id[:10] in problem for problem in report.verification.problems)


@pytest.mark.parametrize("rows", [10, 40_000])  # inline rows in the log; a Parquet chunk file
def test_audit_after_erase_and_gc_verifies_like_verify(db: udr.Lake, rows: int) -> None:
    db.create_table("people", pa.schema([("id", pa.int64()), ("name", pa.string())]), primary_key=["id"])
    load = db.append("people", {"id": list(range(rows)), "name": [f"n{i}" for i in range(rows)]})
    db.upsert("people", {"id": [1], "name": ["renamed"]})
    db.erase("people", {"id": [1]}, reason="request")
    assert db.gc() > 0
    assert db.verify().ok
    report = db.audit()
    assert report.ok, report.verification.problems
    assert report.verdict.startswith("VERIFIED") and report.verification.commits_checked == len(db.log())
    assert db.audit(since=load.id).ok
