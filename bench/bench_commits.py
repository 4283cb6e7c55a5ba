"""W2: small durable cross-table commits; W4: time travel cost and snapshot open latency."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import lmdb
import pyarrow as pa
from common import median_time, remove, report, scratch

import udr


def small_batch(n: int, start: int) -> pa.Table:
    return pa.table({
        "id": pa.array(range(start, start + n), pa.int64()),
        "amount": pa.array([float(i % 97) for i in range(n)]),
        "note": pa.array([f"row {i}" for i in range(start, start + n)]),
    })


def w2_transactions(db: udr.Lake, batches: list[pa.Table], name: str) -> float:
    """Commit one W2 transaction (both tables get the batch, durable) per batch; return transactions/s."""
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        with db.transaction(message=f"{name} {i}") as tx:
            tx.append("orders", batch)
            tx.append("payments", batch)
    return len(batches) / (time.perf_counter() - start)


def w2(transactions: int = 1000) -> None:
    path = scratch("w2")
    db = udr.open(path / "lake")
    batches = [small_batch(100, i * 100) for i in range(transactions)]
    udr_rate = w2_transactions(db, batches, "tx")
    db.close()
    # Baseline: LMDB alone, durable commits of the same payload size, same disk, same run.
    env = lmdb.open(str(path / "raw"), map_size=1 << 32)
    payload = b"x" * 2 * len(batches[0].to_pandas().to_csv())
    start = time.perf_counter()
    for i in range(transactions):
        with env.begin(write=True) as txn:
            txn.put(str(i).encode(), payload)
    lmdb_rate = transactions / (time.perf_counter() - start)
    env.close()
    report("W2", "transactions/s (2 tables x 100 rows, fsync)", udr_rate, "tx/s", baseline=lmdb_rate,
           baseline_name="LMDB alone", target=">= 1500 tx/s", ok=udr_rate >= 1500)
    remove(path)


OPEN_SCRIPT = """
import sys, time, random, udr
db = udr.open(sys.argv[1])
ids = [c for c in sys.argv[2:]]
times = []
for cid in ids:
    t = time.perf_counter()
    db.tables(at=cid)
    times.append(time.perf_counter() - t)
times.sort()
print(times[len(times) // 2], times[-1])
"""


def w4(commits: int = 500, history: int = 10_000) -> None:
    path = scratch("w4")
    db = udr.open(path / "lake")
    for i in range(commits):
        db.append("events", small_batch(1000, i * 1000), message=f"batch {i}")
    head = median_time(lambda: db.read("events"), 5)
    past = median_time(lambda: db.read("events", at=f"main~{commits // 2}"), 5)
    report("W4", f"read at main~{commits // 2} vs head ({commits} commits)", past, "s", baseline=head,
           baseline_name="read head", target="<= 1.2x", ok=past <= 1.2 * head)
    # A long history: 10,000 commits (tiny ones to keep the build short).
    for i in range(history - commits):
        db.append("ticks", small_batch(5, i * 5))
    ids = [c.id for c in db.log()]
    db.close()
    sample = random.Random(7).sample(ids, 50)
    out = subprocess.run([sys.executable, "-c", OPEN_SCRIPT, str(path / "lake"), *sample],
                         capture_output=True, text=True, check=True).stdout.split()
    median, worst = float(out[0]), float(out[1])
    report("W4", f"open a snapshot, {len(ids)}-commit history (median)", median * 1000, "ms",
           target="< 10 ms", ok=median < 0.010)
    report("W4", f"open a snapshot, {len(ids)}-commit history (worst of 50)", worst * 1000, "ms",
           target="< 10 ms", ok=worst < 0.010)
    remove(path)


if __name__ == "__main__":
    w2()
    w4()
