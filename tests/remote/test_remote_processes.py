"""Several processes, each with its own cache, on one lake in object storage: concurrent writers, a reader
following them, and a writer SIGKILLed at random moments. They share nothing but the S3 server.
"""

from __future__ import annotations

import itertools
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from processes import Start, finish, worker_processes

import udr

WORKERS = Path(__file__).parent / "remote_workers.py"
TIMEOUT = 120
SCHEMA = pa.schema([("writer", pa.string()), ("n", pa.int64()), ("i", pa.int64())])


@pytest.fixture
def start() -> Iterator[Start]:
    """Start a worker process (`WORKERS COMMAND ...`); any still running at the end is killed."""
    with worker_processes(WORKERS) as start:
        yield start



def _acked(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith("acked ")]


def _check_linear(db: udr.Lake) -> list[udr.Commit]:
    """The lake's log is one chain (each commit's parent is the one before it) and verifies clean."""
    log = list(reversed(db.log(limit=None)))
    assert [c.seq for c in log] == list(range(len(log)))
    assert all(c.parents == (p.id,) for p, c in itertools.pairwise(log))
    assert db.verify().problems == []
    return log


def test_two_writer_processes_never_lose_or_interleave_a_commit(url: str, caches: Path, start: Start) -> None:
    with udr.open(url, cache=caches / "setup") as db:
        db.create_table("events", SCHEMA)
    writers = [start("write", url, caches / name, name, 15) for name in ("a", "b")]
    acked = {name: _acked(finish(proc, TIMEOUT)) for name, proc in zip(("a", "b"), writers)}
    with udr.open(url, cache=caches / "check") as db:
        log = _check_linear(db)
        ids = [c.id for c in log]
        for name in ("a", "b"):
            assert len(acked[name]) == 15
            assert all(cid in ids for cid in acked[name])
            # Each writer's commits keep its own order in the one log.
            assert [ids.index(cid) for cid in acked[name]] == sorted(ids.index(cid) for cid in acked[name])
        rows = db.query("select writer, n, count(*) as c from events group by all order by all").to_pylist()
        assert rows == [{"writer": w, "n": n, "c": 10} for w in ("a", "b") for n in range(15)]


def test_a_reader_process_on_its_own_cache_sees_every_commit(url: str, caches: Path, start: Start) -> None:
    with udr.open(url, cache=caches / "setup") as db:
        db.create_table("events", SCHEMA)
    reader = start("read", url, caches / "reader", 20)
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    acked = _acked(finish(start("write", url, caches / "writer", "w", 20), TIMEOUT))
    got = [line.split() for line in finish(reader, TIMEOUT) if line.startswith("got ")]
    assert [g[1] for g in got] == acked
    assert all(g[2] == "10" for g in got)


@pytest.mark.slow
def test_a_writer_killed_at_random_moments_leaves_every_acked_commit_and_nothing_partial(
        url: str, caches: Path, start: Start) -> None:
    with udr.open(url, cache=caches / "setup") as db:
        db.create_table("events", SCHEMA)
    rng = random.Random(15)
    acked: list[str] = []
    for round_ in range(6):
        # The same cache each round: a writer killed between its commit point and its local commit left an
        # entry its cache must apply on reopening.
        proc = start("churn", url, caches / "writer", f"w{round_}")
        time.sleep(rng.uniform(1.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=TIMEOUT)
        acked += _acked(out.splitlines())
        with udr.open(url, cache=caches / f"check{round_}") as db:
            log = _check_linear(db)
            ids = {c.id for c in log}
            assert set(acked) <= ids
            commits = [c for c in log if "events" in c.tables]
            rows = db.row_count("events")
            assert rows == sum(c.tables["events"].inserted for c in commits)
            assert db.query("select count(*) as c from (select writer, n from events group by all "
                            "having count(*) not in (10, 20000))").to_pylist() == [{"c": 0}]
    assert len(acked) > 6
