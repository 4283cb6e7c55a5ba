"""SIGKILL depth: kill a real writer process at random moments, restart it, and check what survived.

The writer moves money between `accounts_a` and `accounts_b` and prints each commit id once `commit()`
returned (its acknowledgement); about a third of its transactions also write a Parquet chunk file, so kills
land in chunk writes as well as in the LMDB commit. Each round lets the writer acknowledge a random
number of commits, then kills it a random time later, in the middle of whatever it is doing. The plan
comes from a seeded generator; where the kills land still varies with machine speed.
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import numpy as np
from crash_checks import (
    Worker,
    Workers,
    apply_transfer,
    bank_state,
    check_bank_history,
    chunk_files,
    referenced_chunks,
    tmp_files,
)
from crash_workers import ACCOUNTS, plan_transfer, setup_bank, stage

import udr

SEED = 20240611
MIN_ACKNOWLEDGED = 50
COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")


def _kill_writers_until_enough_acknowledged(lake: Path, workers: Workers) -> list[str]:
    """Run, kill and restart writers; return the commit ids they acknowledged, in order.

    The next writer starts (and warms up) while the current one runs, so a round costs little more than
    its run time; it opens the lake only once its `go` file appears.
    """
    plan = random.Random(SEED)
    acknowledged: list[str] = []
    rounds = 0

    def start(n: int) -> Worker:
        return workers.start("bank", lake, SEED + n, 0, lake.with_name(f"go{n}"))

    writer = start(0)
    while len(acknowledged) < MIN_ACKNOWLEDGED:
        writer.expect("warm")
        lake.with_name(f"go{rounds}").touch()
        writer.expect("ready")
        spare = start(rounds + 1)
        for _ in range(plan.randint(1, 12)):
            writer.expect("")
        # A transfer takes tens of milliseconds, one with a chunk file about a hundred.
        time.sleep(plan.uniform(0.0, 0.15))
        writer.kill()
        assert writer.proc.returncode == -signal.SIGKILL, f"writer died on its own: {writer.stderr()}"
        lines = writer.lines[2:]
        assert all(COMMIT_ID.match(line) for line in lines), lines
        acknowledged += lines
        writer = spare
        rounds += 1
    writer.kill()
    return acknowledged


def test_sigkilled_writer_keeps_every_acknowledged_commit_and_no_partial_one(
    tmp_path: Path, workers: Workers
) -> None:
    lake = tmp_path / "lake"
    setup = setup_bank(lake)
    acknowledged = _kill_writers_until_enough_acknowledged(lake, workers)

    with udr.open(lake) as db:
        log = db.log()
        seqs = {c.id: c.seq for c in log}
        missing = [cid for cid in acknowledged if cid not in seqs]
        assert not missing, f"{len(missing)} acknowledged commits lost: {missing[:3]}"
        assert [seqs[cid] for cid in acknowledged] == sorted(seqs[cid] for cid in acknowledged)
        history = check_bank_history(db, setup)
        assert history.transfers >= len(acknowledged)
        report = db.verify()
        assert report.ok, report.problems

        before_gc = chunk_files(lake)
        db.gc()
        after_gc = chunk_files(lake)
        assert after_gc <= before_gc
        assert tmp_files(lake) == []
        report = db.verify()
        assert report.ok, report.problems
        assert db.gc() == 0

        # The lake still takes writes: no killed writer left the LMDB write lock held.
        move = plan_transfer(np.random.default_rng(SEED), ledger=True, blobs=False)
        with db.transaction(message="after the kills", metadata=move.metadata) as tx:
            stage(tx, move, None)
        assert tx.committed is not None
        assert bank_state(db, tx.committed.id) == apply_transfer(bank_state(db, log[0].id), move.metadata)

    assert after_gc == referenced_chunks(lake)
    assert len(after_gc) == history.with_blobs
    # After gc, through a fresh handle, `read` at every acknowledged commit still gives what the replay saw.
    with udr.open(lake) as db:
        for n, cid in enumerate(acknowledged):
            table = ACCOUNTS[n % 2]
            rows = db.read(table, at=cid).to_pydict()
            seen = {f"{table}:{k}": v for k, v in zip(rows["id"], rows["balance"], strict=True)}
            assert seen.items() <= history.states[cid].balances.items()
            assert len(seen) == len(history.states[cid].balances) // 2
