"""Change streams and retention: a consumer group's feed survives `expire` + `gc`; a feed over expired
versions raises `udr.Expired` instead of delivering wrong or partial changes."""

from __future__ import annotations

import anyio
import pytest

import udr

pytestmark = pytest.mark.anyio


async def _take(sub: udr.Subscription, n: int) -> list[udr.ChangeBatch]:
    out: list[udr.ChangeBatch] = []
    with anyio.fail_after(10):
        async for batch in sub:
            out.append(batch)
            if len(out) == n:
                break
    return out


def _write(db: udr.Lake, n: int) -> None:
    db.overwrite("t", {"id": list(range(n * 10, n * 10 + 5)), "v": [f"row-{n}"] * 5})


async def test_group_feed_survives_expire_and_gc(db: udr.Lake) -> None:
    for n in range(2):
        _write(db, n)
    async with db.subscribe("t", group="etl") as sub:
        for batch in await _take(sub, 2):
            await sub.ack(batch)
    for n in range(2, 6):
        _write(db, n)
    db.set_retention(keep_commits=1)
    assert db.expire().expired == 1  # only the first write: the group has not read the last four
    db.gc()
    async with db.subscribe("t", group="etl") as sub:
        batches = await _take(sub, 4)
    for n, batch in enumerate(batches, start=2):
        rows = batch.changes.to_pylist()
        assert sorted(r["v"] for r in rows if r["_change"] == "insert") == [f"row-{n}"] * 5
        assert sorted(r["v"] for r in rows if r["_change"] == "delete") == [f"row-{n - 1}"] * 5
    with pytest.raises(udr.Expired):
        async with db.subscribe("t") as sub:  # from the earliest commit: across an expired version
            await _take(sub, 1)
