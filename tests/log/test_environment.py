"""The `Environment` seam: one conformance suite run against the LMDB environment and its in-memory twin.

Every module of `udr.log` relies on these semantics (snapshot reads, atomic serialized writes, ordered cursors,
`overwrite=False`), so the twin passing them is what lets the whole log run in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from udr.errors import UdrError
from udr.log.envtypes import Environment
from udr.log.index import LmdbEnvironment
from udr.log.memory import MemoryEnvironment

NAMES = (b"a", b"b")


@pytest.fixture(params=["lmdb", "memory"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Environment]:
    made: Environment = (LmdbEnvironment(tmp_path / "env", NAMES, durable=False, map_size=1 << 24)
                         if request.param == "lmdb" else MemoryEnvironment(NAMES))
    try:
        yield made
    finally:
        made.close()


def _fill(env: Environment, db: bytes, items: dict[bytes, bytes]) -> None:
    with env.write() as txn:
        for key, value in items.items():
            txn.put(key, value, db=env.db(db))


def test_clear_empties_every_sub_database(env: Environment) -> None:
    _fill(env, b"a", {b"1": b"x"})
    _fill(env, b"b", {b"2": b"y"})
    env.clear()
    with env.read() as txn:
        assert txn.get(b"1", db=env.db(b"a")) is None
        assert txn.get(b"2", db=env.db(b"b")) is None


def test_a_failed_write_leaves_nothing_and_frees_the_writer(env: Environment) -> None:
    with pytest.raises(RuntimeError), env.write() as txn:
        txn.put(b"k", b"v", db=env.db(b"a"))
        txn.put(b"k", b"v", db=env.db(b"b"))
        raise RuntimeError("abort")
    with env.read() as txn:
        assert txn.get(b"k", db=env.db(b"a")) is None
        assert txn.get(b"k", db=env.db(b"b")) is None
    _fill(env, b"a", {b"k": b"after"})  # the writer lock was released
    with env.read() as txn:
        assert txn.get(b"k", db=env.db(b"a")) == b"after"


def test_a_write_sees_its_own_writes_and_a_reader_keeps_its_snapshot(env: Environment) -> None:
    _fill(env, b"a", {b"k": b"old"})
    with env.read() as before:
        with env.write() as txn:
            txn.put(b"k", b"new", db=env.db(b"a"))
            assert txn.get(b"k", db=env.db(b"a")) == b"new"
            txn.delete(b"k", db=env.db(b"a"))
            assert txn.get(b"k", db=env.db(b"a")) is None
            txn.put(b"k", b"newer", db=env.db(b"a"))
        assert before.get(b"k", db=env.db(b"a")) == b"old"
    with env.read() as after:
        assert after.get(b"k", db=env.db(b"a")) == b"newer"


def test_put_without_overwrite_keeps_the_value_and_says_so(env: Environment) -> None:
    with env.write() as txn:
        assert txn.put(b"k", b"first", db=env.db(b"a"), overwrite=False)
        assert not txn.put(b"k", b"second", db=env.db(b"a"), overwrite=False)
        assert txn.get(b"k", db=env.db(b"a")) == b"first"
        assert txn.delete(b"k", db=env.db(b"a"))
        assert not txn.delete(b"k", db=env.db(b"a"))


def test_cursors_walk_keys_in_byte_order(env: Environment) -> None:
    items = {b"b2": b"4", b"a1": b"1", b"b1": b"3", b"a2": b"2", b"c": b"5"}
    _fill(env, b"a", items)
    with env.read() as txn:
        cursor = txn.cursor(db=env.db(b"a"))
        assert list(cursor) == sorted(items.items())
        cursor = txn.cursor(db=env.db(b"a"))
        assert cursor.set_range(b"b")
        assert cursor.key() == b"b1"
        assert [k for k, _ in cursor] == [b"b1", b"b2", b"c"]
        cursor = txn.cursor(db=env.db(b"a"))
        assert not cursor.set_range(b"d")
        assert cursor.last() and cursor.key() == b"c"
        cursor = txn.cursor(db=env.db(b"a"))
        assert cursor.set_range(b"a2")
        assert list(cursor.iternext(keys=True, values=False)) == [b"a2", b"b1", b"b2", b"c"]
        assert txn.stat(env.db(b"a"))["entries"] == 5
        assert not txn.cursor(db=env.db(b"b")).last()


def test_transaction_ids_grow_with_each_committed_write(env: Environment) -> None:
    start = env.last_txnid()
    _fill(env, b"a", {b"k": b"v"})
    written = env.last_txnid()
    assert written > start
    assert env.published(written)
    env.wait_published()
    with env.read() as txn:
        assert txn.id() == written


def test_writers_are_serialized_and_lose_no_update(env: Environment) -> None:
    _fill(env, b"a", {b"n": b"0"})

    def bump() -> None:
        for _ in range(50):
            with env.write() as txn:
                value = int(txn.get(b"n", db=env.db(b"a")) or b"0")
                txn.put(b"n", str(value + 1).encode(), db=env.db(b"a"))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with env.read() as txn:
        assert txn.get(b"n", db=env.db(b"a")) == b"200"


def test_held_chunks_count_every_hold(env: Environment) -> None:
    env.hold("c1")
    env.hold("c1")
    env.release(["c1"])
    assert env.held() == {"c1"}
    env.release(["c1"])
    assert env.held() == set()


def test_a_closed_environment_refuses_use(env: Environment) -> None:
    env.close()
    with pytest.raises(UdrError, match="closed"), env.read():
        pass
