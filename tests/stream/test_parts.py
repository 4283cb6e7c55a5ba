"""Bounded batches: a commit's changes to a table larger than `max_rows` arrive in numbered parts, each
acknowledged on its own, and a group resumes at the part after its last acknowledged one."""

from __future__ import annotations

from pathlib import Path

import anyio
import pyarrow as pa
import pytest

import udr

pytestmark = pytest.mark.anyio

ROWS = 10_000


def _lake(path: Path, rows: int = ROWS) -> udr.Lake:
    db = udr.open(path)
    with db.transaction(message="setup") as tx:
        tx.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
        tx.create_table("u", pa.schema([("x", pa.int64())]))
    db.append("t", {"id": list(range(rows)), "v": [str(i) for i in range(rows)]})
    db.append("u", {"x": [1, 2, 3]})
    return db


async def _take(sub: udr.Subscription, n: int, *, ack: bool = True) -> list[udr.ChangeBatch]:
    out = []
    with anyio.fail_after(30):
        async for batch in sub:
            out.append(batch)
            if ack:
                await sub.ack(batch)
            if len(out) == n:
                break
    return out


def _ids(batches: list[udr.ChangeBatch]) -> list[int]:
    return [i for b in batches if b.table == "t" for i in b.changes.column("id").to_pylist()]


async def test_a_large_commit_arrives_in_numbered_parts_of_max_rows(tmp_path: Path) -> None:
    with _lake(tmp_path / "lake") as db:
        async with db.subscribe(["t", "u"], max_rows=3000) as sub:
            batches = await _take(sub, 5)
        async with db.subscribe(["t", "u"]) as whole:
            [one, small] = await _take(whole, 2)
    parts = [b for b in batches if b.table == "t"]
    assert [(b.part, b.parts, b.changes.num_rows) for b in parts] == [(0, 4, 3000), (1, 4, 3000), (2, 4, 3000),
                                                                       (3, 4, 1000)]
    assert [b.last_part for b in parts] == [False, False, False, True]
    assert pa.concat_tables([b.changes for b in parts]).equals(one.changes)
    assert (one.part, one.parts, one.changes.num_rows) == (0, 1, ROWS)
    assert batches[-1].table == "u" and (batches[-1].part, batches[-1].parts) == (0, 1) == (small.part, small.parts)


async def test_a_group_resumes_at_the_part_after_its_last_ack(tmp_path: Path) -> None:
    with _lake(tmp_path / "lake") as db:
        async with db.subscribe(["t", "u"], group="g", max_rows=3000) as sub:
            first = await _take(sub, 2)
            unacked = await _take(sub, 1, ack=False)
        assert [b.part for b in first + unacked] == [0, 1, 2]
        # The unacknowledged third part comes again, then the rest; the two acknowledged ones never do.
        async with db.subscribe(["t", "u"], group="g", max_rows=3000) as sub:
            rest = await _take(sub, 3)
        assert [(b.table, b.part) for b in rest] == [("t", 2), ("t", 3), ("u", 0)]
        assert sorted(_ids(first + rest)) == list(range(ROWS))
        assert db.groups()[0].lag_commits == 0


async def test_a_group_resumed_with_another_max_rows_neither_repeats_nor_skips_a_row(tmp_path: Path) -> None:
    with _lake(tmp_path / "lake") as db:
        async with db.subscribe("t", group="g", max_rows=3000) as sub:
            first = await _take(sub, 1)
        info = db.groups()[0]
        assert (info.lag_commits, info.lag_rows) == (1, ROWS - 3000)
        async with db.subscribe("t", group="g", max_rows=4000) as sub:
            rest = await _take(sub, 2)
        # Rows 3000..3999 finish part 0 of the 4000-row grid; 4000.. is part 1, then part 2 (8000..9999).
        assert [(b.part, b.parts, b.changes.num_rows) for b in rest] == [(0, 3, 1000), (1, 3, 4000)]
        async with db.subscribe("t", group="g", max_rows=100_000) as sub:
            last = await _take(sub, 1)
        assert (last[0].part, last[0].changes.num_rows) == (0, 2000)
        assert _ids(first + rest + last) == list(range(ROWS))


async def test_parts_are_acknowledged_in_order_each_once(tmp_path: Path) -> None:
    with _lake(tmp_path / "lake") as db:
        async with db.subscribe("t", group="g", max_rows=4000) as sub:
            a, b = await _take(sub, 2, ack=False)
            with pytest.raises(udr.AckError, match=r"part 2 of 3.*out of order"):
                await sub.ack(b)
            await sub.ack(a)
            with pytest.raises(udr.AckError, match=r"part 1 of 3.*already acknowledged"):
                await sub.ack(a)
            with db.transaction(message="out") as tx:
                tx.ack(sub, b)
        async with db.subscribe("t", group="g", max_rows=4000) as sub:
            [c] = await _take(sub, 1)
        assert (c.part, c.changes.column("id")[0].as_py()) == (2, 8000)


async def test_members_of_a_group_get_every_row_of_every_part_once(tmp_path: Path) -> None:
    with _lake(tmp_path / "lake") as db:
        async with db.subscribe("t", group="g", member="m1", partitions=4, max_rows=2500) as sub:
            batches = await _take(sub, 16)
    assert {b.partition for b in batches} == {0, 1, 2, 3}
    assert sorted((b.part, b.partition) for b in batches) == [(p, n) for p in range(4) for n in range(4)]
    assert sorted(_ids(batches)) == list(range(ROWS))


def test_max_rows_below_one_is_a_usage_error(tmp_path: Path) -> None:
    with _lake(tmp_path / "lake", rows=1) as db, pytest.raises(udr.UsageError, match="max_rows"):
        db.subscribe("t", max_rows=0)
