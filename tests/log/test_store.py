"""udr.log.store: the commit point (append with compare-and-swap and rebase), refs, blobs, garbage, format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from udr.errors import ConflictError, CorruptionError, FormatError, RefNotFound
from udr.log.commits import CommitRecord, Fragment, TableOp, commit_id, encode_commit
from udr.log.format import (
    DB_COMMITS,
    DB_INTENTS,
    DB_META,
    FORMAT_VERSION,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.hashing import content_id
from udr.log.index import frame_blob
from udr.log.label import read_format
from udr.log.reflog import Reason
from udr.log.refs import branch_key, tag_key
from udr.log.store import LogStore


def _schema_blob(n: int = 0) -> tuple[BlobId, bytes]:
    payload = f"schema {n}".encode()
    return BlobId(content_id(payload)), payload


def _record(*tables: str, parent: CommitId, branch: str = "main", message: str = ""
            ) -> tuple[CommitRecord, dict[BlobId, tuple[BlobKind, bytes]]]:
    """A commit creating each of `tables`, plus the blobs it needs."""
    schema, payload = _schema_blob()
    record = CommitRecord(
        parents=(parent,), seq=0, branch=branch, time_us=0, author="test", message=message,
        tables={t: TableOp(create=True, schema=schema) for t in tables},
    )
    return record, {schema: (BlobKind.SCHEMA, payload)}


def _commit(log: LogStore, *tables: str, message: str = "") -> CommitId:
    head = log.head("main")
    assert head is not None
    record, blobs = _record(*tables, parent=head, message=message)
    cid, _ = log.append(record, base=head, rebase=False, blobs=blobs)
    return cid


def _root(log: LogStore) -> CommitId:
    head = log.head("main")
    assert head is not None
    return head


# -- a new lake -----------------------------------------------------------------------------------------


def test_new_lake_has_one_root_commit_on_main(log: LogStore) -> None:
    root = _root(log)
    record = log.get_commit(root)
    assert record.parents == ()
    assert record.seq == 0
    assert record.branch == "main"
    assert record.tables == {}
    assert log.branches() == {"main": root}
    assert log.tags() == {}
    assert log.last_seq() == 0
    assert list(log.commits_from(0)) == [(0, root)]
    assert json.loads((log.root / "FORMAT").read_text()) == {"format": "udr-lake", "version": FORMAT_VERSION}


def test_reopening_does_not_create_another_root(tmp_path: Path) -> None:
    first = LogStore(tmp_path / "lake")
    root = _root(first)
    first.close()
    second = LogStore(tmp_path / "lake")
    try:
        assert second.head("main") == root
        assert second.last_seq() == 0
    finally:
        second.close()


# -- append ---------------------------------------------------------------------------------------------


def test_append_moves_the_head_and_assigns_parent_seq_and_time(log: LogStore) -> None:
    root = _root(log)
    record, blobs = _record("orders", parent=root, message="m")
    before_us = time.time_ns() // 1000
    cid, final = log.append(record, base=root, rebase=False, blobs=blobs)
    assert log.head("main") == cid
    assert final.parents == (root,)
    assert final.seq == 1
    assert final.time_us >= before_us
    assert final.time_us > log.get_commit(root).time_us
    assert cid == commit_id(encode_commit(final))
    assert log.get_commit(cid) == final
    assert list(log.commits_from(1)) == [(1, cid)]
    assert log.commit_at_seq(1) == cid
    (schema, (kind, payload)), = blobs.items()
    assert log.get_blob(schema, kind) == payload


def test_times_strictly_increase_along_the_chain(log: LogStore) -> None:
    ids = [_commit(log, f"t{i}") for i in range(5)]
    times = [log.get_commit(c).time_us for c in ids]
    assert times == sorted(set(times))


def test_stale_base_without_rebase_is_a_conflict_naming_both_heads(log: LogStore) -> None:
    root = _root(log)
    moved = _commit(log, "a")
    record, blobs = _record("b", parent=root)
    with pytest.raises(ConflictError) as info:
        log.append(record, base=root, rebase=False, blobs=blobs)
    assert root[:7] in str(info.value) and moved[:7] in str(info.value)
    assert info.value.retryable
    assert log.head("main") == moved
    assert log.last_seq() == 1


def test_rebase_places_a_commit_on_top_when_no_table_overlaps(log: LogStore) -> None:
    root = _root(log)
    moved = _commit(log, "a")
    record, blobs = _record("b", parent=root)
    cid, final = log.append(record, base=root, rebase=True, blobs=blobs)
    assert final.parents == (moved,)
    assert log.head("main") == cid
    assert final.seq == 2


def test_rebase_over_a_commit_touching_the_same_table_is_a_conflict(log: LogStore) -> None:
    root = _root(log)
    _commit(log, "a")
    other = _commit(log, "shared")
    schema, payload = _schema_blob(7)
    record = CommitRecord(
        parents=(root,), seq=0, branch="main", time_us=0, author="t", message="",
        tables={"shared": TableOp(create=True, schema=schema), "c": TableOp(create=True, schema=schema)},
    )
    with pytest.raises(ConflictError, match="shared"):
        log.append(record, base=root, rebase=True, blobs={schema: (BlobKind.SCHEMA, payload)})
    assert log.head("main") == other
    assert log.last_seq() == 2
    assert not log.has_blob(schema), "a refused commit stored its blobs"


def test_append_to_a_missing_branch_is_ref_not_found(log: LogStore) -> None:
    root = _root(log)
    record, blobs = _record("a", parent=root, branch="mian")
    with pytest.raises(RefNotFound, match="main"):
        log.append(record, base=root, rebase=False, blobs=blobs)


def test_append_refuses_a_file_fragment_whose_chunk_is_gone(log: LogStore) -> None:
    root = _root(log)
    schema, payload = _schema_blob()
    ghost = ChunkId(content_id(b"never written"))
    record = CommitRecord(
        parents=(root,), seq=0, branch="main", time_us=0, author="t", message="",
        tables={"a": TableOp(create=True, schema=schema, add=(Fragment(ghost, 1, False, schema),), inserted=1)},
    )
    with pytest.raises(ConflictError, match=ghost):
        log.append(record, base=root, rebase=False, blobs={schema: (BlobKind.SCHEMA, payload)})
    assert log.head("main") == root


def test_append_stores_inline_blobs_at_the_commit_point(log: LogStore) -> None:
    root = _root(log)
    schema, payload = _schema_blob()
    rows = b"inline rows" * 50
    rows_id = BlobId(content_id(rows))
    record = CommitRecord(
        parents=(root,), seq=0, branch="main", time_us=0, author="t", message="",
        tables={"a": TableOp(create=True, schema=schema, add=(Fragment(ChunkId(rows_id), 1, True, schema),))},
    )
    assert not log.has_blob(rows_id)
    log.append(record, base=root, rebase=False,
               blobs={schema: (BlobKind.SCHEMA, payload), rows_id: (BlobKind.ROWS, rows)})
    assert log.get_blob(rows_id, BlobKind.ROWS) == rows
    assert log.blob_size(rows_id) > 0


def test_failing_hook_aborts_the_whole_commit(log: LogStore) -> None:
    root = _root(log)
    record, blobs = _record("a", parent=root)

    def hook(txn: object, env: object) -> None:
        raise RuntimeError("subscriber offset write failed")

    with pytest.raises(RuntimeError):
        log.append(record, base=root, rebase=False, blobs=blobs, hook=hook)
    assert log.head("main") == root
    assert log.last_seq() == 0
    assert [m.reason.action for m in log.ref_moves()] == ["create"]  # the move's record went with it


# -- refs -----------------------------------------------------------------------------------------------

WHY = Reason("test", "moved by a test", "tester")


def test_update_ref_is_compare_and_swap(log: LogStore) -> None:
    root = _root(log)
    second = _commit(log, "a")
    log.update_ref(tag_key("v1"), root, None, WHY)
    assert log.tags() == {"v1": root}
    with pytest.raises(ConflictError):
        log.update_ref(tag_key("v1"), second, None, WHY)
    with pytest.raises(ConflictError):
        log.update_ref(branch_key("main"), root, root, WHY)  # main is at `second`, not `root`
    log.update_ref(branch_key("dev"), root, None, WHY)
    log.update_ref(branch_key("dev"), second, root, WHY)
    assert log.branches() == {"main": second, "dev": second}
    log.update_ref(branch_key("dev"), None, second, WHY)
    assert log.branches() == {"main": second}
    assert log.tags() == {"v1": root}


def test_every_ref_move_and_only_a_done_one_is_in_the_ref_log(log: LogStore) -> None:
    root = _root(log)
    second = _commit(log, "a")
    log.update_ref(branch_key("dev"), root, None, WHY)
    with pytest.raises(ConflictError):
        log.update_ref(branch_key("dev"), second, second, WHY)
    log.update_ref(branch_key("dev"), None, root, Reason("delete", "gone", "bob"))
    found = [(m.ref, m.old, m.new, m.reason.action) for m in log.ref_moves(newest_first=False)]
    assert found == [("branch:main", None, root, "create"), ("branch:main", root, second, "commit"),
                     ("branch:dev", None, root, "test"), ("branch:dev", root, None, "delete")]
    assert [m.position for m in log.ref_moves()] == [3, 2, 1, 0]


def test_find_commits_by_prefix(log: LogStore) -> None:
    cid = _commit(log, "a")
    assert log.find_commits(cid[:7]) == [cid]
    assert log.find_commits(cid) == [cid]
    assert log.find_commits("g" * 7) == []
    assert 1 <= len(log.find_commits("")) <= 2


def test_unknown_commit_is_ref_not_found(log: LogStore) -> None:
    with pytest.raises(RefNotFound):
        log.get_commit(CommitId("0" * 64))


def test_a_damaged_commit_record_is_detected(disk_log: LogStore) -> None:
    cid = _commit(disk_log, "a", message="original")
    forged = encode_commit(disk_log.get_commit(cid)).replace(b"original", b"Original")
    _, stored = frame_blob(BlobKind.COMMIT, forged)
    with disk_log.env.write() as txn:
        txn.put(cid.encode(), stored, db=disk_log.env.db(DB_COMMITS))
    # A record this handle already verified is served from memory; re-reading the bytes finds the damage.
    assert disk_log.get_commit(cid).message == "original"
    with pytest.raises(CorruptionError, match=cid):
        disk_log.get_commit(cid, cached=False)
    fresh = LogStore(disk_log.root)
    try:
        with pytest.raises(CorruptionError, match=cid):
            fresh.get_commit(cid)
    finally:
        fresh.close()


# -- blobs ----------------------------------------------------------------------------------------------


def test_put_blobs_now_and_get_blob(log: LogStore) -> None:
    blob, payload = _schema_blob(3)
    log.put_blobs_now({blob: (BlobKind.SCHEMA, payload)})
    assert log.has_blob(blob)
    assert log.get_blob(blob, BlobKind.SCHEMA) == payload
    with pytest.raises(CorruptionError, match="kind"):
        log.get_blob(blob, BlobKind.ROWS)


def test_a_blob_staged_under_the_wrong_id_is_refused(log: LogStore) -> None:
    wrong = BlobId(content_id(b"something else"))
    with pytest.raises(CorruptionError, match=wrong):
        log.put_blobs_now({wrong: (BlobKind.SCHEMA, b"payload")})
    assert not log.has_blob(wrong)


def test_a_missing_blob_is_corruption_naming_it(log: LogStore) -> None:
    missing = BlobId(content_id(b"nope"))
    with pytest.raises(CorruptionError, match=missing):
        log.get_blob(missing, BlobKind.ROWS)
    assert log.blob_size(missing) == 0


# -- garbage --------------------------------------------------------------------------------------------


def _commit_chunk(log: LogStore, table: str, data: bytes) -> ChunkId:
    chunk = log.chunks.put(data)
    head = _root(log)
    schema, payload = _schema_blob()
    record = CommitRecord(
        parents=(head,), seq=0, branch="main", time_us=0, author="t", message="",
        tables={table: TableOp(create=True, schema=schema, add=(Fragment(chunk, 1, False, schema),), inserted=1)},
    )
    log.append(record, base=head, rebase=False, blobs={schema: (BlobKind.SCHEMA, payload)})
    return chunk


def test_gc_deletes_only_unreferenced_chunks(log: LogStore) -> None:
    kept = _commit_chunk(log, "a", b"referenced" * 100)
    garbage = log.chunks.put(b"garbage" * 100)
    assert log.collect_garbage() == 700
    assert not log.chunks.exists(garbage)
    assert log.chunks.get(kept) == b"referenced" * 100
    assert log.collect_garbage() == 0


def test_gc_keeps_chunks_held_in_this_process_until_released(log: LogStore) -> None:
    held = log.chunks.put(b"held by an open transaction")
    log.register_intents([held])
    log.env.hold(held)
    assert log.collect_garbage() == 0
    assert log.chunks.exists(held)
    log.env.release([held])
    assert log.collect_garbage() == len(b"held by an open transaction")
    assert not log.chunks.exists(held)


def test_held_chunks_are_shared_by_every_handle_of_the_process(disk_log: LogStore) -> None:
    other = LogStore(disk_log.root)
    try:
        held = disk_log.chunks.put(b"held through the other handle")
        other.env.hold(held)
        assert disk_log.collect_garbage() == 0
        other.env.release([held])
        assert disk_log.collect_garbage() > 0
    finally:
        other.close()


def test_gc_keeps_chunks_a_live_process_intends_to_commit_and_drops_dead_intents(log: LogStore) -> None:
    live = log.chunks.put(b"live writer's chunk")
    dead = log.chunks.put(b"dead writer's chunk")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(finished.stdout)
    try:
        # Intents as another process records them (register_intents always uses this process's pid).
        with log.env.write() as txn:
            for chunk, pid in ((live, sleeper.pid), (dead, dead_pid)):
                txn.put(chunk.encode(), json.dumps({"pid": pid, "time_us": 0}).encode(), db=log.env.db(DB_INTENTS))
        assert log.collect_garbage() == len(b"dead writer's chunk")
        assert log.chunks.exists(live)
        assert not log.chunks.exists(dead)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_gc_removes_temp_files_of_crashed_writers(log: LogStore) -> None:
    tmp = log.root / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "abcd.123.tmp").write_bytes(b"half written")
    assert log.collect_garbage() == len(b"half written")
    assert list(tmp.iterdir()) == []


# -- format ---------------------------------------------------------------------------------------------


def test_read_format_of_missing_and_empty_directories(tmp_path: Path) -> None:
    assert read_format(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert read_format(tmp_path / "empty") is None


def test_read_format_of_a_lake(log: LogStore) -> None:
    assert read_format(log.root) == FORMAT_VERSION


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "udr-lake", "version": 99}', "99.*5"),
        ('{"format": "other-thing", "version": 1}', "not a UDR lake"),
        ("not json", "damaged"),
        ('{"format": "udr-lake"}', "damaged"),
    ],
)
def test_read_format_refuses_what_it_cannot_read(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "FORMAT").write_text(content)
    with pytest.raises(FormatError, match=message):
        read_format(tmp_path)


def test_read_format_refuses_a_non_lake(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError, match="not a UDR lake"):
        read_format(tmp_path)
    with pytest.raises(FormatError, match="file"):
        read_format(tmp_path / "notes.txt")


def test_a_newer_lake_is_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    (tmp_path / "FORMAT").write_text('{"format": "udr-lake", "version": 99}')
    with pytest.raises(FormatError):
        LogStore(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["FORMAT"]


def test_a_log_of_a_newer_format_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    LogStore(tmp_path).close()
    log = LogStore(tmp_path)
    with log.env.write() as txn:
        txn.put(b"format_version", b"99", db=log.env.db(DB_META))
    log.close()
    with pytest.raises(FormatError, match=r"format version 99.*upgrade udr"):
        LogStore(tmp_path)


def test_a_relabel_cut_between_log_and_format_file_reads_as_the_newer_version(tmp_path: Path) -> None:
    LogStore(tmp_path).close()
    (tmp_path / "FORMAT").write_text('{"format": "udr-lake", "version": 1}\n')
    log = LogStore(tmp_path)
    try:
        assert log.version == FORMAT_VERSION
    finally:
        log.close()
