"""Many writers (issue 11): C0 the disk's floor, C1 one writer, C2 four appending processes, C2t four appending
threads of one process (their commits share write transactions, `udr.log.groupcommit`), C3 four upserting
processes with their conflicts checked against the collisions that really happened; C1m and C2s, what this
machine allows C1 and C2 whatever the log's design (`ceilings`).

Every figure is a ratio to a reference measured in this run: C1 to C0's append + fdatasync rate, C2 and C3 to C1.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
from bench_commits import small_batch, w2_transactions
from bench_floor import floor
from common import remove, report, scratch

import udr

WRITERS = 4
KEYED_ROWS = 1_000_000
UPSERT_KEYS = 10


# A writer's commit rate, and when (wall clock) its first transaction began and its last one ended.
_Span = tuple[float, float, float]


def _w2_writer(lake: str, name: str, first: int, transactions: int, start: float) -> _Span:
    """W2-shaped transactions (2 tables x 100 rows, durable) from one process, batches `first`, `first` + 1, ...
    of C1's; return its `_Span`."""
    db = udr.open(lake)
    batches = [small_batch(100, i * 100) for i in range(first, first + transactions)]
    while time.time() < start:
        time.sleep(0.001)
    began = time.time()
    rate = w2_transactions(db, batches, f"{name} tx")
    ended = time.time()
    db.close()
    return rate, began, ended


def _seeded(lake: Path) -> Path:
    """`lake` with C1's two tables made, so no writer's first commit creates them."""
    with udr.open(lake) as db:
        db.append("orders", small_batch(1, -1))
        db.append("payments", small_batch(1, -1))
    return lake


def _wall(spans: list[_Span]) -> float:
    """Seconds from the first writer's first transaction to the last one's end, as C1 times its own
    transactions: the pool's wall time also holds starting the processes (2 s may not cover importing udr on a
    busy machine), making the batches, opening and closing the lake."""
    return max(s[2] for s in spans) - min(s[1] for s in spans)


def _pool_run(target: object, args: list[tuple[object, ...]]) -> tuple[list[object], float]:
    """Run `target(*a)` for each `a` in its own spawned process, all starting together; results and seconds."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(len(args)) as pool:
        began = time.perf_counter()
        results = pool.starmap(target, args)  # type: ignore[arg-type]
        return results, time.perf_counter() - began


def c1_c2(c0: float, transactions: int = 1000) -> float:
    """C1 (one writer) and C2 (four writer processes on the same two tables); return the C1 rate."""
    path = scratch("c1")
    solo, _ = _pool_run(_w2_writer, [(str(path / "lake"), "solo", 0, transactions, time.time() + 1)])
    [(single, _, _)] = cast("list[_Span]", solo)
    remove(path)
    path = scratch("c2")
    lake = _seeded(path / "lake")
    start = time.time() + 2
    each = transactions // WRITERS
    # C1's transactions shared out: identical batches in several writers would each be re-encoded as a copy
    # (`Staging`), work C1 does not do.
    results, _ = _pool_run(_w2_writer, [(str(lake), f"w{i}", i * each, each, start) for i in range(WRITERS)])
    seconds = _wall(cast("list[_Span]", results))
    with udr.open(lake) as db:
        rows = db.row_count("orders") + db.row_count("payments")
        commits = sum(1 for c in db.log(limit=None) if c.message.startswith("w"))
    aggregate = commits / seconds
    assert rows == 2 + 2 * 100 * each * WRITERS and commits == each * WRITERS, (rows, commits)
    report("C1", "one writer, W2 transactions (durable)", single, "tx/s", baseline=c0,
           baseline_name="C0 append+fdatasync", target=">= 0.5x", ok=single >= 0.5 * c0)
    report("C2", f"{WRITERS} writer processes, same 2 tables, aggregate", aggregate, "tx/s", baseline=single,
           baseline_name="C1", target=">= 2.5x, 0 conflicts", ok=aggregate >= 2.5 * single)
    remove(path)
    return single


def ceilings(c0: float, c1_rate: float, transactions: int = 1000) -> None:
    """What this machine allows C1 and C2 whatever the log's design, printed beside them (no targets).

    C1m: C1's writer with its lake in /dev/shm, where an fsync costs nothing: the commit's CPU alone, against C0.
    C2s: C2's four writer processes, each on a lake of its own on this disk: nothing shared (no other writer's
    commits to place over or fold, no lock), against C1.
    """
    memory = Path("/dev/shm")
    if memory.is_dir():
        path = Path(tempfile.mkdtemp(prefix="udr-c1m-", dir=memory))
        try:
            solo, _ = _pool_run(_w2_writer, [(str(path / "lake"), "solo", 0, transactions, time.time() + 1)])
        finally:
            remove(path)
        [(rate, _, _)] = cast("list[_Span]", solo)
        report("C1m", "one writer, lake in /dev/shm (fsync free): the commit's CPU", rate, "tx/s", baseline=c0,
               baseline_name="C0 append+fdatasync", target="(no target: C1's ceiling on this CPU)")
    path = scratch("c2s")
    each = transactions // WRITERS
    lakes = [_seeded(path / f"lake{i}") for i in range(WRITERS)]
    results, _ = _pool_run(_w2_writer, [(str(lakes[i]), f"w{i}", i * each, each, time.time() + 2)
                                        for i in range(WRITERS)])
    rate = each * WRITERS / _wall(cast("list[_Span]", results))
    report("C2s", f"{WRITERS} writer processes, a lake each (nothing shared)", rate, "tx/s", baseline=c1_rate,
           baseline_name="C1", target="(no target: C2's ceiling on this machine)")
    remove(path)


def c2_threads(c1_rate: float, transactions: int = 1000) -> None:
    """C2t: C2's transactions from four threads of one process sharing one open lake (no target: printed to
    show what the group commit of threads gives, against C1 in the same run)."""
    path = scratch("c2t")
    with udr.open(_seeded(path / "lake")) as db:
        each = transactions // WRITERS
        spans: list[tuple[float, float]] = []

        def run(first: int) -> None:
            batches = [small_batch(100, i * 100) for i in range(first, first + each)]
            began = time.time()
            w2_transactions(db, batches, f"t{first} tx")
            spans.append((began, time.time()))

        threads = [threading.Thread(target=run, args=(i * each,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = each * WRITERS / (max(s[1] for s in spans) - min(s[0] for s in spans))
        assert db.row_count("orders") == 1 + 100 * each * WRITERS
    report("C2t", f"{WRITERS} writer threads of one process, same 2 tables", rate, "tx/s", baseline=c1_rate,
           baseline_name="C1", target="(no target)")
    remove(path)


def _upserter(lake: str, worker: int, transactions: int, start: float) -> tuple[int, int, int, float, float]:
    """Upsert UPSERT_KEYS random keys per transaction, retrying on conflict; return (commits, conflicts, false
    conflicts, when the first transaction began, when the last one ended). A conflict is false unless a commit
    made after the transaction's base set one of its cells."""
    db = udr.open(lake)
    rng = random.Random(worker)
    commits = conflicts = false = 0
    while time.time() < start:
        time.sleep(0.001)
    began = time.time()
    for i in range(transactions):
        keys = sorted(rng.sample(range(KEYED_ROWS), UPSERT_KEYS))
        rows = pa.table({"k": pa.array(keys, pa.int64()), "v": pa.array([worker * 10**9 + i] * UPSERT_KEYS)})
        while True:
            tx = db.transaction(message=f"u{worker} {i}", metadata={"keys": ",".join(map(str, keys))})
            base = tx.base
            tx.upsert("kv", rows)
            try:
                tx.commit()
                commits += 1
                break
            except udr.ConflictError:
                conflicts += 1
                false += not (_keys_since(db, base) & set(keys))
    ended = time.time()
    db.close()
    return commits, conflicts, false, began, ended


def _keys_since(db: udr.Lake, base: str) -> set[int]:
    out: set[int] = set()
    for commit in db.log(limit=None):
        if commit.id == base:
            break
        out.update(int(k) for k in commit.metadata.get("keys", "").split(",") if k)
    return out


def c3(c1_rate: float, transactions: int = 250) -> None:
    path = scratch("c3")
    lake = path / "lake"
    with udr.open(lake) as db:
        db.create_table("kv", pa.schema([pa.field("k", pa.int64(), nullable=False), ("v", pa.int64())]),
                        primary_key=["k"])
        db.append("kv", {"k": np.arange(KEYED_ROWS), "v": np.zeros(KEYED_ROWS, np.int64)})
    start = time.time() + 3
    results, _ = _pool_run(_upserter, [(str(lake), w, transactions, start) for w in range(WRITERS)])
    runs = cast("list[tuple[int, int, int, float, float]]", results)
    # Timed as C1 and C2 are: from the first writer's first transaction to the last one's end (the pool's wall
    # time also held starting the processes, importing udr, opening and closing the lake).
    seconds = max(r[4] for r in runs) - min(r[3] for r in runs)
    commits = sum(r[0] for r in runs)
    conflicts = sum(r[1] for r in runs)
    false = sum(r[2] for r in runs)
    with udr.open(lake) as db:
        assert db.row_count("kv") == KEYED_ROWS
    rate = commits / seconds
    report("C3", f"{WRITERS} upserting processes, 1M-row keyed table", rate, "tx/s", baseline=c1_rate,
           baseline_name="C1", target=">= 2x", ok=rate >= 2 * c1_rate)
    report("C3", "conflicts without a real collision", false, "tx", target=f"0 (of {conflicts} conflicts)",
           ok=false == 0)
    remove(path)


if __name__ == "__main__":
    disk = floor()
    report("C0", "append 4 KiB + fdatasync", disk.fdatasync_ops, "ops/s")
    report("C0", "LMDB alone, one tiny put per durable tx", disk.lmdb_tx, "tx/s")
    rate = c1_c2(disk.fdatasync_ops, int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
    ceilings(disk.fdatasync_ops, rate)
    c2_threads(rate)
    c3(rate)
