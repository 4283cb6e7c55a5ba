"""Consumer groups with several members, in one process: partitioning, rebalancing on join, leave and
death, stale acks, busy member names, reset and delete, and the partition hash pinned as a format."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anyio
import pyarrow as pa
import pytest

import udr
from udr.stream.partition import assign, partitions_of, split

KV = pa.schema([("k", pa.int64()), ("v", pa.int64())])
EV = pa.schema([("x", pa.int64())])


@pytest.fixture
def db(tmp_path: Path) -> udr.Lake:
    lake = udr.open(tmp_path / "lake")
    with lake.transaction() as tx:
        tx.create_table("kv", KV, primary_key=["k"])
        tx.create_table("ev", EV)
    return lake


async def _take(sub: udr.Subscription, *, ack: bool = True, limit: float = 0.5) -> list[udr.ChangeBatch]:
    """Every batch `sub` delivers until it has nothing for `limit` seconds, acknowledged."""
    got: list[udr.ChangeBatch] = []
    while True:
        with anyio.move_on_after(limit):
            batch = await sub.__anext__()
            got.append(batch)
            if ack:
                await sub.ack(batch)
            continue
        return got


def _owned(db: udr.Lake, group: str) -> dict[str, tuple[int, ...]]:
    info = {g.name: g for g in db.groups()}[group]
    return {m.name: m.partitions for m in info.members if m.active}


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(child.stdout)


def _reference_partition(key: tuple[object, ...], count: int) -> int:
    """docs/FORMAT.md's definition, row by row: the canonical bytes of each key value, FNV-1's prime as
    the polynomial, the columns combined in key order, splitmix64's finalizer."""
    mask = (1 << 64) - 1
    combined = 0
    for value in key:
        data = value if isinstance(value, bytes) else str(value).encode()
        h = 0
        for byte in data:
            h = (h * 0x100000001B3 + byte) & mask
        combined = (combined * 0x9E3779B97F4A7C15 + h + len(data)) & mask
    combined = ((combined ^ (combined >> 30)) * 0xBF58476D1CE4E5B9) & mask
    combined = ((combined ^ (combined >> 27)) * 0x94D049BB133111EB) & mask
    return (combined ^ (combined >> 31)) % count


def test_the_partition_hash_is_pinned() -> None:
    # Part of the on-disk contract (docs/FORMAT.md): partition positions depend on these numbers.
    ints = pa.table({"k": [0, 1, 2, 3, 42, -7, 10**12]})
    assert partitions_of(ints, ["k"], 8).tolist() == [7, 0, 1, 7, 0, 7, 6]
    texts = pa.table({"s": ["", "a", "billing", "ünïcode"], "n": [1, 2, 3, 4]})
    assert partitions_of(texts, ["s"], 16).tolist() == [0, 15, 12, 15]
    assert partitions_of(texts, ["s", "n"], 16).tolist() == [0, 2, 7, 0]
    for table, key, count in ((ints, ["k"], 8), (texts, ["s"], 16), (texts, ["s", "n"], 16)):
        rows = zip(*(table[c].to_pylist() for c in key), strict=True)
        assert partitions_of(table, key, count).tolist() == [_reference_partition(r, count) for r in rows]
    # The same key always lands in the same partition, however it is batched.
    assert partitions_of(ints.slice(4), ["k"], 8).tolist() == [0, 7, 6]


def test_split_keeps_row_order_and_sends_unkeyed_batches_whole_by_commit() -> None:
    rows = pa.table({"k": list(range(50)), "v": list(range(50))})
    parts = split(rows, ["k"], 4, seq=9)
    assert sum(t.num_rows for t in parts.values()) == 50
    for n, part in parts.items():
        ks = part.column("k").to_pylist()
        assert ks == sorted(ks) and set(partitions_of(part, ["k"], 4).tolist()) == {n}
    assert list(split(rows, None, 4, seq=9)) == [1]
    assert assign(5, ["b", "a"]) == {0: "a", 1: "b", 2: "a", 3: "b", 4: "a"} and assign(3, []) == {}


@pytest.mark.anyio
async def test_each_key_goes_to_one_partition_in_commit_order(db: udr.Lake) -> None:
    for i in range(6):
        db.upsert("kv", {"k": list(range(20)), "v": [i] * 20})
        db.append("ev", {"x": [i]})
    async with db.subscribe(["kv", "ev"], group="g", member="solo", partitions=4) as sub:
        batches = await _take(sub)
    seen: dict[int, list[tuple[int, str]]] = {}
    values: dict[int, list[int]] = {}
    for b in batches:
        assert b.partition is not None
        seen.setdefault(b.partition, []).append((b.commit.seq, b.table))
        if b.table == "kv":
            assert set(partitions_of(b.changes, ["k"], 4).tolist()) == {b.partition}
            for k, v, change in zip(b.changes["k"].to_pylist(), b.changes["v"].to_pylist(),
                                    b.changes["_change"].to_pylist(), strict=True):
                if change != "update_before":
                    values.setdefault(k, []).append(v)
        else:
            assert b.partition == b.commit.seq % 4
    for order in seen.values():
        assert order == sorted(order) and len(set(order)) == len(order)
    assert values == {k: list(range(6)) for k in range(20)}  # every change once, in commit order
    assert _owned(db, "g") == {}  # closed: its lease and partitions are free


@pytest.mark.anyio
async def test_members_rebalance_on_join_and_leave(db: udr.Lake) -> None:
    db.upsert("kv", {"k": list(range(40)), "v": [0] * 40})
    a = db.subscribe("kv", group="g", member="a", partitions=4)
    first = await _take(a)
    assert {b.partition for b in first} == {0, 1, 2, 3}
    b = db.subscribe("kv", group="g", member="b")
    db.upsert("kv", {"k": list(range(40)), "v": [1] * 40})
    async with anyio.create_task_group() as tg:
        got: dict[str, list[udr.ChangeBatch]] = {}

        async def run(name: str, sub: udr.Subscription) -> None:
            got[name] = await _take(sub)

        tg.start_soon(run, "a", a)
        tg.start_soon(run, "b", b)
    assert _owned(db, "g") == {"a": (0, 2), "b": (1, 3)}
    assert {x.partition for x in got["b"]} == {1, 3} and {x.partition for x in got["a"]} == {0, 2}
    rows = sum(x.changes.num_rows for x in got["a"] + got["b"])
    assert rows == 80  # 40 updates, each as before and after, none twice
    await b.aclose()
    db.upsert("kv", {"k": list(range(40)), "v": [2] * 40})
    after = await _take(a)
    assert _owned(db, "g") == {"a": (0, 1, 2, 3)}
    assert sum(x.changes.num_rows for x in after) == 80
    await a.aclose()


@pytest.mark.anyio
async def test_a_joining_member_waits_for_unacknowledged_batches(db: udr.Lake) -> None:
    db.upsert("kv", {"k": list(range(40)), "v": [0] * 40})
    async with db.subscribe("kv", group="g", member="a", partitions=2) as a:
        held = await _take(a, ack=False)
        assert sorted(x.partition or 0 for x in held) == [0, 1]
        async with db.subscribe("kv", group="g", member="b") as b:
            assert await _take(b, limit=0.5) == []
            assert _owned(db, "g") == {"a": (0, 1), "b": ()}  # a keeps what awaits its ack
            with db.transaction() as tx:
                tx.append("ev", {"x": [1]})  # an output outside the followed table
                for x in held:
                    tx.ack(a, x)
            assert await _take(a, limit=0.3) == []  # a looks again and gives partition 1 back
            assert await _take(b, limit=0.5) == []  # nothing of partition 1 is delivered twice
            assert _owned(db, "g") == {"a": (0,), "b": (1,)}
            db.upsert("kv", {"k": list(range(40)), "v": [1] * 40})
            assert {x.partition for x in await _take(b)} == {1}
            assert {x.partition for x in await _take(a)} == {0}


@pytest.mark.anyio
async def test_a_dead_members_batch_goes_to_the_new_owner_and_its_stale_ack_is_refused(
        db: udr.Lake, tmp_path: Path) -> None:
    db.upsert("kv", {"k": list(range(10)), "v": [0] * 10})
    a = db.subscribe("kv", group="g", member="a", partitions=1)
    in_flight = await a.__anext__()
    # a "dies": its lease now names a process that is gone.
    with db._handle.ctx.log.env.write() as txn:
        txn.put(b"member:g\0a", b'{"pid":%d,"started":null,"token":"gone","time_us":1}' % _dead_pid(),
                db=db._handle.ctx.log.env.db(b"groups"))
    async with db.subscribe("kv", group="g", member="b") as b:
        again = await _take(b)
        assert [x.commit.seq for x in again] == [in_flight.commit.seq]
        assert again[0].changes.equals(in_flight.changes)
        with pytest.raises(udr.GroupBusy, match="no longer holds its lease"), db.transaction() as tx:
            tx.upsert("kv", {"k": [500], "v": [5]})
            tx.ack(a, in_flight)
        assert db.sql("SELECT count(*) FROM kv WHERE k = 500").fetchall() == [(0,)]  # nothing committed
        assert _owned(db, "g") == {"b": (0,)}
    await a.aclose()


@pytest.mark.anyio
async def test_a_live_member_name_is_busy_and_other_names_join(db: udr.Lake) -> None:
    async with db.subscribe("kv", group="g", member="a"):
        with pytest.raises(udr.GroupBusy, match="member 'a' of group 'g' is live"):
            db.subscribe("kv", group="g", member="a")
        async with db.subscribe("kv", group="g", member="b"):
            with pytest.raises(udr.UsageError, match="has 8 partitions, not 3"):
                db.subscribe("kv", group="g", member="c", partitions=3)
            with pytest.raises(udr.UsageError, match="several members"):
                db.subscribe("kv", group="g")
            with pytest.raises(udr.UsageError, match=re.escape("member=... name")):
                db.subscribe("kv", group="g", partitions=8)
            with pytest.raises(udr.UsageError, match="belongs to a group"):
                db.subscribe("kv", member="c")
            with pytest.raises(udr.UsageError, match="group 'g' follows kv; its members must subscribe"):
                db.subscribe(["kv", "ev"], group="g", member="c")
    async with db.subscribe("kv", group="g", member="a"):
        pass  # a closed member's name is free again


@pytest.mark.anyio
async def test_reset_and_delete_wait_for_members_to_stop(db: udr.Lake) -> None:
    first = db.upsert("kv", {"k": [1, 2, 3], "v": [1, 1, 1]})
    db.upsert("kv", {"k": [1, 2, 3], "v": [2, 2, 2]})
    sub = db.subscribe("kv", group="g", member="a", partitions=2)
    assert sum(b.changes.num_rows for b in await _take(sub)) == 9
    with pytest.raises(udr.GroupBusy):
        db.reset_group("g", first.id)
    with pytest.raises(udr.GroupBusy):
        db.delete_group("g")
    await sub.aclose()
    db.reset_group("g", first.id)
    assert {p.seq for p in db.groups()[0].partitions} == {first.seq}
    async with db.subscribe("kv", group="g", member="a") as again:
        assert sum(b.changes.num_rows for b in await _take(again)) == 6  # the second upsert only, again
    db.delete_group("g")
    assert db.groups() == []
    with pytest.raises(udr.UsageError, match="no consumer group 'g'"):
        db.delete_group("g")


@pytest.mark.anyio
async def test_a_single_member_group_gets_members_at_its_position(db: udr.Lake) -> None:
    db.append("ev", {"x": [1]})
    async with db.subscribe("ev", group="g") as solo:
        await _take(solo)
    db.append("ev", {"x": [2]})
    async with db.subscribe("ev", group="g", member="a", partitions=3) as a:
        got = await _take(a)
    assert [b.changes["x"].to_pylist() for b in got] == [[2]]
    info = db.groups()[0]
    assert len(info.partitions) == 3 and info.members == () and not info.active  # "a" left when it closed


@pytest.mark.anyio
async def test_a_damaged_partition_record_is_a_corruption_error_naming_the_group(db: udr.Lake) -> None:
    async with db.subscribe("kv", group="billing", member="a", partitions=2):
        pass
    with db._handle.ctx.log.env.write() as txn:
        txn.put(b"partition:billing\x000001", b"{not json", db=db._handle.ctx.log.env.db(b"groups"))
    with pytest.raises(udr.CorruptionError, match="billing"):
        db.groups()


@pytest.mark.anyio
async def test_partitions_without_rows_move_along_with_the_acks(db: udr.Lake) -> None:
    for i in range(5):
        db.upsert("kv", {"k": [7], "v": [i]})  # one key: one partition gets every batch
    last = db.log(limit=1)[0]
    async with db.subscribe("kv", group="g", member="a") as sub:
        got = await _take(sub)
        assert len({b.partition for b in got}) == 1 and len(got) == 5
    [info] = db.groups()
    assert {p.seq for p in info.partitions} == {last.seq} and info.lag_commits == 0
    async with db.subscribe("kv", group="g", member="b") as again:
        assert await _take(again) == []  # nothing is read again after a restart
