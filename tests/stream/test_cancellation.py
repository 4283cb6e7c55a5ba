"""Cancellation by asyncio itself (`wait_for`, `Task.cancel`), which gets through anyio's shields: a
cancelled wait for a batch, an ack or a close loses nothing and leaves nothing held."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import udr
from udr.log.processes import process_alive

COMMITS = 90


@pytest.fixture
def db(tmp_path: Path) -> Iterator[udr.Lake]:
    lake = udr.open(tmp_path / "lake")
    lake.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
    lake.upsert("t", {"id": list(range(50)), "v": [0] * 50})
    try:
        yield lake
    finally:
        lake.close()


def _updates(db: udr.Lake) -> list[int]:
    """Commits that update rows: not 'light', so a subscriber reads them ahead in a worker thread."""
    return [db.upsert("t", {"id": list(range(50)), "v": [i] * 50}).seq for i in range(1, COMMITS + 1)]


def test_timeouts_around_anext_lose_no_batch_and_the_group_acks_every_one(db: udr.Lake) -> None:
    start = db.commit_info("main").id
    seqs = _updates(db)

    async def consume() -> list[int]:
        got: list[int] = []
        async with db.subscribe("t", group="g", start=start) as sub:
            deadline = time.monotonic() + 60
            while len(got) < COMMITS and time.monotonic() < deadline:
                try:
                    batch = await asyncio.wait_for(sub.__anext__(), timeout=0.001)
                except asyncio.TimeoutError:
                    continue
                got.append(batch.commit.seq)
                await sub.ack(batch)
        return got

    assert asyncio.run(consume()) == seqs
    [group] = db.groups()
    assert group.lag_commits == 0


def test_a_cancelled_ack_leaves_the_next_ack_possible(db: udr.Lake) -> None:
    start = db.commit_info("main").id
    _updates(db)

    async def consume() -> None:
        async with db.subscribe("t", group="g", start=start) as sub:
            for delay in (0, 0.0002, 0.0005, 0.001, 0.002, 0.004):
                batch = await sub.__anext__()
                task = asyncio.ensure_future(sub.ack(batch))
                await asyncio.sleep(delay)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                try:
                    await sub.ack(batch)  # if the cancelled ack was not durable yet
                except udr.AckError as exc:
                    assert "already acknowledged" in str(exc)
            await sub.ack(await sub.__anext__())

    asyncio.run(consume())
    assert db.groups()[0].lag_commits == COMMITS - 7


def test_a_close_cancelled_twice_still_gives_the_group_back(db: udr.Lake) -> None:
    async def main() -> None:
        async def consumer() -> None:
            async with db.subscribe("t", group="g") as sub:
                async for _ in sub:
                    pass

        task = asyncio.ensure_future(consumer())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.sleep(0.0001)
        task.cancel()  # e.g. a timeout, then the shutdown of its task group
        with pytest.raises(asyncio.CancelledError):
            await task
        again = db.subscribe("t", group="g")  # GroupBusy if the lease leaked
        await again.aclose()

    asyncio.run(main())


def test_a_killed_process_not_yet_reaped_holds_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not process_alive(child.pid), "a zombie counts as dead"
    finally:
        child.kill()
        child.wait()
    assert process_alive(os.getpid())
