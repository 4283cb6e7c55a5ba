"""Several writer processes on one lake: transfers rebase onto each other's commits, nothing is lost or
doubled, and SIGKILLs among concurrent writers keep every acknowledged commit."""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import pyarrow as pa
import pytest
from crash_checks import Worker, Workers, check_bank_history
from crash_workers import TOTAL, TOTAL_QUERY, setup_bank

import udr

COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")


def _start_all(workers: Workers, lake: Path, count: int, n: int, isolation: str, go: Path,
               threads: int = 1) -> list[Worker]:
    started = [workers.start("bank", lake, 40 + i, count, go, 0.1, isolation, threads) for i in range(n)]
    for worker in started:
        worker.expect("warm")
    go.touch()
    return started


@pytest.mark.parametrize(("isolation", "processes", "threads"),
                         [("snapshot", 3, 1), ("serializable", 3, 1), ("snapshot", 1, 3), ("serializable", 1, 3)])
def test_concurrent_transfers_keep_the_total_and_each_commit_is_one_transfer(
    tmp_path: Path, workers: Workers, isolation: str, processes: int, threads: int
) -> None:
    # Threads of one process commit in shared write transactions (udr.log.groupcommit), processes each in theirs.
    lake = tmp_path / "lake"
    setup = setup_bank(lake)
    writers = _start_all(workers, lake, 25, processes, isolation, tmp_path / "go", threads)
    for worker in writers:
        assert worker.wait() == 0, worker.stderr()
    acknowledged = [line for w in writers for line in w.lines if COMMIT_ID.match(line)]
    conflicts = sum(int(line.split()[1]) for w in writers for line in w.lines if line.startswith("conflicts"))

    assert len(acknowledged) == 75
    with udr.open(lake) as db:
        history = check_bank_history(db, setup)  # every commit is exactly one transfer on its parent
        assert history.transfers == 75
        assert set(acknowledged) <= set(history.states)
        assert all(len(c.parents) <= 1 for c in db.log())  # rebased, never merged
        assert db.query(TOTAL_QUERY).column(0)[0].as_py() == TOTAL
        assert db.verify().ok
    assert conflicts < 75 * 3, "nearly every transfer conflicted"


@pytest.mark.parametrize(("processes", "threads"), [(3, 1), (2, 3)])
def test_sigkilled_concurrent_writers_keep_every_acknowledged_commit(
    tmp_path: Path, workers: Workers, processes: int, threads: int
) -> None:
    # With threads, a kill also lands while a leader holds the appends of the others in its write transaction.
    lake = tmp_path / "lake"
    setup = setup_bank(lake)
    plan = random.Random(11)
    acknowledged: list[str] = []
    for round_ in range(4):
        writers = _start_all(workers, lake, 0, processes, "snapshot", tmp_path / f"go{round_}", threads)
        for worker in writers:
            worker.expect("ready")
        time.sleep(plan.uniform(0.2, 0.6))
        for worker in writers:
            worker.kill()
            assert worker.proc.returncode == -signal.SIGKILL, worker.stderr()
            acknowledged += [line for line in worker.lines if COMMIT_ID.match(line)]
    assert len(acknowledged) >= 10
    with udr.open(lake) as db:
        ids = {c.id for c in db.log()}
        lost = [cid for cid in acknowledged if cid not in ids]
        assert not lost, f"{len(lost)} acknowledged commits lost"
        history = check_bank_history(db, setup)
        assert history.transfers >= len(acknowledged)
        assert db.verify().ok
        db.gc()
        assert db.verify().ok


@pytest.mark.parametrize("loaded", [0, 3000])
def test_four_writers_appending_and_upserting_lose_nothing_and_conflict_only_on_shared_keys(
    tmp_path: Path, workers: Workers, loaded: int
) -> None:
    """With `loaded` rows bulk-loaded first, every upsert deletes rows of that one fragment: the log places
    upserts of disjoint keys over each other by re-pointing its deletion vector (`udr.log.keyplace`)."""
    lake = tmp_path / "lake"
    with udr.open(lake) as db, db.transaction() as tx:
        tx.create_table("ev", pa.schema([("w", pa.int64()), ("i", pa.int64())]))
        tx.create_table("kv", pa.schema([pa.field("k", pa.int64(), nullable=False), ("v", pa.int64())]),
                        primary_key=["k"])
        tx.append("kv", {"k": list(range(loaded)), "v": [-1] * loaded})
    go = tmp_path / "go"
    writers = [workers.start("mixed", lake, seed, 30, go) for seed in range(1, 5)]
    for worker in writers:
        worker.expect("warm")
    go.touch()
    for worker in writers:
        assert worker.wait() == 0, worker.stderr()
    lines = [line for w in writers for line in w.lines]
    acknowledged = [line for line in lines if COMMIT_ID.match(line)]
    assert "false-conflict" not in lines
    assert len(acknowledged) == 120

    with udr.open(lake) as db:
        log = [c for c in reversed(db.log()) if "keys" in c.metadata]
        assert {c.id for c in log} == set(acknowledged)
        assert db.row_count("ev") == 120 * 3
        model = dict.fromkeys(range(loaded), -1)
        for commit in log:  # the log's order is the serial order: the last writer of a key wins
            for key in commit.metadata["keys"].split(","):
                model[int(key)] = int(commit.metadata["value"])
        assert dict(zip(*db.read("kv").to_pydict().values())) == model
        state = db._handle.ctx.materializer.snapshot(db._handle.head("main"))["kv"]
        for frag in state.fragments:  # each vector names each deleted row once, as many as its count says
            positions = db._handle.ctx.rows.deleted_positions(frag).to_pylist()
            assert len(positions) == len(set(positions)) == frag.deleted
        assert db.verify().ok
