"""C2's CPU: what a W2 commit costs a writer with three others appending to the same tables, against one alone.

Two views, both on a lake in /dev/shm so no disk sync hides the CPU:

- processes: 1 and 4 spawned writer processes, each committing the same number of W2 transactions (distinct
  batches, as `bench_writers.c1_c2`); process CPU (user + system) per commit, averaged over the writers. On a
  shared 2-core machine this moves with the load; run it twice.
- handles: 1 and 4 handles of one lake in one process; per round every handle begins a W2 transaction, then
  each commits in turn, so each commit is placed over the ones made since its base and each handle folds the
  others' commits into its next snapshot, as writer processes do, without their contention for the CPU. The
  steadier figure for the work the other writers' commits add.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_commits import small_batch
from common import report

import udr

WRITERS = 4


def _lake() -> Path:
    root = Path(tempfile.mkdtemp(prefix="writer-cpu-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    with udr.open(root / "lake") as db:  # the tables exist first, so no writer's first commit creates them
        db.append("orders", small_batch(1, -1))
        db.append("payments", small_batch(1, -1))
    return root


def _writer(lake: str, first: int, transactions: int, start: float) -> float:
    """W2 transactions from one process; its CPU seconds per commit."""
    db = udr.open(lake)
    batches = [small_batch(100, i * 100) for i in range(first, first + transactions)]
    while time.time() < start:
        time.sleep(0.001)
    began = time.process_time()
    for i, batch in enumerate(batches):
        with db.transaction(message=f"w {i}") as tx:
            tx.append("orders", batch)
            tx.append("payments", batch)
    cpu = (time.process_time() - began) / transactions
    db.close()
    return cpu


def processes(writers: int, transactions: int) -> float:
    """CPU seconds per commit of `writers` processes committing `transactions` each."""
    root = _lake()
    try:
        with mp.get_context("spawn").Pool(writers) as pool:
            start = time.time() + 2
            args = [(str(root / "lake"), 10**6 + w * transactions, transactions, start) for w in range(writers)]
            return sum(pool.starmap(_writer, args)) / writers
    finally:
        shutil.rmtree(root, ignore_errors=True)


def handles(count: int, rounds: int) -> float:
    """CPU seconds per commit of `count` handles of one lake committing in turn, `rounds` transactions each."""
    root = _lake()
    dbs = [udr.open(root / "lake") for _ in range(count)]
    try:
        batches = iter([small_batch(100, i * 100) for i in range(count * rounds)])
        began = time.process_time()
        for r in range(rounds):
            txs = [db.transaction(message=f"h{n} {r}") for n, db in enumerate(dbs)]
            for tx in txs:
                batch = next(batches)
                tx.append("orders", batch)
                tx.append("payments", batch)
            for tx in txs:
                tx.commit()
        return (time.process_time() - began) / (count * rounds)
    finally:
        for db in dbs:
            db.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    one, four = processes(1, n), processes(WRITERS, n)
    report("C2", "CPU per commit, 4 writer processes (/dev/shm)", four * 1e3, "ms", baseline=one * 1e3,
           baseline_name="1 process")
    one, four = handles(1, n), handles(WRITERS, n // WRITERS)
    report("C2", "CPU per commit, 4 handles in turn (one process)", four * 1e3, "ms", baseline=one * 1e3,
           baseline_name="1 handle")
