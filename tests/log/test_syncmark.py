"""udr.log.syncmark: a writer fsyncs only when nothing since covered its transaction; the mark is trusted only on
this boot and this data file; a long write of another writer does not hold a sync up."""

from __future__ import annotations

import contextlib
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from udr.log.format import LOG_DATA_FILE, SYNC_MARK_FILE
from udr.log.index import open_log_env
from udr.log.syncmark import SyncMark, boot_id


@pytest.fixture
def env(tmp_path: Path) -> Iterator[lmdb.Environment]:
    opened = lmdb.open(str(tmp_path), sync=True, metasync=False)
    yield opened
    opened.close()


def _commit(env: lmdb.Environment, key: bytes) -> int:
    with env.begin(write=True) as txn:
        txnid = int(txn.id())
        txn.put(key, b"x")
    return txnid


def test_a_lone_writer_syncs_and_marks_its_transaction(tmp_path: Path, env: lmdb.Environment) -> None:
    mark = SyncMark(tmp_path, tmp_path / LOG_DATA_FILE, env)
    txnid = _commit(env, b"a")
    assert mark.covered() < txnid
    mark.sync(txnid)
    assert mark.covered() == (txnid if boot_id() is not None else 0)
    mark.close()


def test_a_later_commit_covers_an_earlier_transaction_without_another_sync(tmp_path: Path,
                                                                           env: lmdb.Environment) -> None:
    mark = SyncMark(tmp_path, tmp_path / LOG_DATA_FILE, env)
    first = _commit(env, b"a")
    _commit(env, b"b")  # its own commit fsynced the data file after `first`'s meta page was written
    mark.sync(first)
    assert mark.covered() == 0  # returned without an fsync of its own, so nothing was marked
    mark.close()


def test_a_long_write_of_another_writer_does_not_hold_a_sync_up(tmp_path: Path, env: lmdb.Environment) -> None:
    """Transaction ids skip (others commit side by side), but the next writer holds LMDB for long (gc): the
    writer waits for it only briefly, then fsyncs itself."""
    if boot_id() is None:
        pytest.skip("no boot id on this system: the mark is never trusted")
    mark = SyncMark(tmp_path, tmp_path / LOG_DATA_FILE, env)
    mark.sync(_commit(env, b"a"))
    _commit(env, b"b")  # another writer's
    mine = _commit(env, b"c")
    returned: list[float] = []

    def sync() -> None:
        mark.sync(mine)
        returned.append(time.monotonic())

    with env.begin(write=True) as long_write:
        long_write.put(b"d", b"y")
        began = time.monotonic()
        waiter = threading.Thread(target=sync)
        waiter.start()
        waiter.join(5)
        assert returned and returned[0] - began < 1.0  # it did not wait for this write to end
    assert mark.covered() == mine
    mark.close()


def test_a_mark_of_another_boot_or_data_file_is_not_trusted(tmp_path: Path, env: lmdb.Environment) -> None:
    if boot_id() is None:
        pytest.skip("no boot id on this system: the mark is never trusted")
    mark = SyncMark(tmp_path, tmp_path / LOG_DATA_FILE, env)
    mark.sync(_commit(env, b"a"))
    assert mark.covered() > 0
    stored = (tmp_path / SYNC_MARK_FILE).read_bytes()
    (tmp_path / SYNC_MARK_FILE).write_bytes(stored[:-1] + bytes([stored[-1] ^ 1]))  # another boot's id
    assert mark.covered() == 0
    (tmp_path / SYNC_MARK_FILE).write_bytes(stored[:8] + struct.pack(">Q", 1) + stored[16:])  # another inode
    assert mark.covered() == 0
    (tmp_path / SYNC_MARK_FILE).write_bytes(stored[:5])  # torn
    assert mark.covered() == 0
    mark.close()


def test_log_writes_leave_a_mark_covering_them(tmp_path: Path) -> None:
    if boot_id() is None:
        pytest.skip("no boot id on this system: the mark is never trusted")
    log = open_log_env(tmp_path / "log")
    try:
        with log.write() as txn:
            txn.put(b"k", b"v", db=log.db(b"meta"))
        raw = (tmp_path / "log" / SYNC_MARK_FILE).read_bytes()
        assert struct.unpack(">Q", raw[:8])[0] == log.last_txnid()
    finally:
        log.close()


def _marked(path: Path) -> int:
    raw = (path / SYNC_MARK_FILE).read_bytes()
    return int(struct.unpack(">Q", raw[:8])[0]) if len(raw) >= 8 else 0


@pytest.mark.parametrize("raises", [False, True])
def test_writes_in_a_deferred_sync_are_visible_at_once_and_durable_when_the_block_ends(tmp_path: Path,
                                                                                        raises: bool) -> None:
    if boot_id() is None:
        pytest.skip("no boot id on this system: the mark is never trusted")
    log = open_log_env(tmp_path / "log")
    try:
        with pytest.raises(RuntimeError) if raises else contextlib.nullcontext(), log.deferred_sync():
            for key in (b"a", b"b"):
                with log.write() as txn:
                    txn.put(key, b"v", db=log.db(b"meta"))
            with log.read() as txn:
                assert txn.get(b"b", db=log.db(b"meta")) == b"v"
            assert _marked(tmp_path / "log") < log.last_txnid()  # committed, not yet synced
            if raises:
                raise RuntimeError("the body failed after committing")
        assert _marked(tmp_path / "log") == log.last_txnid()  # one sync covered both, even after a raise
    finally:
        log.close()
