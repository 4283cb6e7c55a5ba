"""Change streams across real processes: delivery from another writer, SIGKILLed exactly-once consumers,
and group leases that die with their holder."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from stream_workers import expected_totals, setup_lake

import udr

WORKERS = Path(__file__).with_name("stream_workers.py")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE, text=True)


def _caught_up(lake: Path) -> bool:
    """Whether the one group of `lake` acknowledged every commit (a consumer killed after acknowledging the
    producer's last batch leaves a new one nothing to do but wait for more batches, forever)."""
    with udr.open(lake) as db:
        [group] = db.groups()
        return group.lag_commits == 0


def _read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline().strip()


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    setup_lake(path)
    return path


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


@pytest.mark.anyio
async def test_commits_of_another_process_arrive_in_order_and_promptly(
        lake: Path, children: list[subprocess.Popen[str]]) -> None:
    with udr.open(lake) as db:
        db.upsert("orders", {"id": [-1], "customer": ["zed"], "amount": [0]})
        async with db.subscribe("orders", start="earliest") as sub:
            with anyio.fail_after(30):
                await sub.__anext__()  # the first delivery pays one-time imports; what follows is steady state
            children.append(_spawn("produce", str(lake), "12"))
            seqs: list[int] = []
            delays: list[float] = []
            with anyio.fail_after(60):
                async for batch in sub:
                    seqs.append(batch.commit.seq)
                    delays.append(time.time() - batch.commit.time.timestamp())
                    if len(seqs) == 12:
                        break
    assert seqs == sorted(seqs) and len(set(seqs)) == 12
    assert sorted(delays)[6] < 1.0  # prompt: well under a second, though this test never asserts a benchmark


def test_sigkilled_exactly_once_consumers_end_with_totals_equal_to_a_recomputation(
        lake: Path, children: list[subprocess.Popen[str]]) -> None:
    rng = random.Random(5)
    producer = _spawn("produce", str(lake), "24")
    children.append(producer)
    backends = ["asyncio", "trio"]
    kills = 0
    for round_ in range(2):
        if round_ and _caught_up(lake):
            break  # the killed consumer had acknowledged the last batch: a new one would wait forever
        consumer = _spawn("consume", str(lake), "totals", backends[round_ % 2])
        children.append(consumer)
        # Let it apply a few batches, then kill it at a random moment inside its loop.
        for _ in range(rng.randint(1, 4)):
            if not _read_line(consumer):
                break
        time.sleep(rng.uniform(0.0, 0.05))
        if consumer.poll() is None:
            os.kill(consumer.pid, signal.SIGKILL)
            kills += 1
        consumer.wait()
    assert kills > 0
    assert producer.wait(timeout=90) == 0
    if not _caught_up(lake):
        final = _spawn("consume", str(lake), "totals", "asyncio")
        children.append(final)
        assert final.wait(timeout=90) == 0
    with udr.open(lake) as db:
        totals = {r["customer"]: r["total"] for r in db.read("totals").to_pylist() if r["total"] != 0}
        assert totals == expected_totals(db)
        [group] = db.groups()
        assert (group.name, group.lag_commits, group.active) == ("totals", 0, False)
        assert db.verify().ok


def test_a_group_lease_is_busy_while_its_holder_lives_and_free_once_it_dies(
        lake: Path, children: list[subprocess.Popen[str]]) -> None:
    holder = _spawn("hold", str(lake), "billing")
    children.append(holder)
    assert _read_line(holder) == "holding"
    with udr.open(lake) as db:
        with pytest.raises(udr.GroupBusy, match=f"process {holder.pid}"):
            db.subscribe(group="billing")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        anyio.run(db.subscribe(group="billing").aclose)
