"""A1 history of one key through 1,000 commits, A2 blame of the W5 table, A3 replay of 1,000 small commits."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pyarrow as pa
from bench_refresh import initial, refreshed
from common import median_time, remove, report, scratch

import udr

COMMITS = 1_000
KEYS = 500
TRACKED = 42


def small_commits(db: udr.Lake) -> tuple[float, udr.Commit, udr.Commit]:
    """1,000 commits upserting 5 rows, the tracked key in every 10th; every 100 commits a branch and main both
    change the tracked row and the branch is merged (10 merge commits); commit 5 is a "bad import" of keys
    nothing else writes. Returns commits per second, the start and the import."""
    schema = pa.schema([("id", pa.int64()), ("v", pa.int64()), ("s", pa.string())])
    start = db.create_table("t", schema, primary_key=["id"])
    bad = start
    began = time.perf_counter()
    made = 0
    for i in range(COMMITS - 3 * (COMMITS // 100)):
        ids = [(i * 7 + j) % KEYS + 100 for j in range(5)]
        if i % 10 == 0:
            ids[0] = TRACKED
        if i == 5:
            ids = [10_000 + j for j in range(5)]
        done = db.upsert("t", pa.table({"id": ids, "v": [i] * 5, "s": [f"x{i}"] * 5}, schema=schema),
                         author=f"writer{i % 3}", message=f"batch {i}")
        bad = done if i == 5 else bad
        made += 1
        if i % 100 == 99:
            # Both sides change the tracked row, so the merge decides a conflict (and history lists it).
            db.create_branch("side", at=done.id)
            db.upsert("t", pa.table({"id": [TRACKED], "v": [-i], "s": ["side"]}, schema=schema), branch="side")
            db.upsert("t", pa.table({"id": [TRACKED], "v": [i], "s": ["main"]}, schema=schema))
            db.merge("side", strategy="theirs", author="merger")
            db.delete_branch("side")
            made += 3
    return made / (time.perf_counter() - began), start, bad


def a1_a3() -> None:
    path = scratch("audit")
    db = udr.open(path / "lake")
    rate, start, bad = small_commits(db)
    versions = db.history("t", {"id": TRACKED})
    elapsed = median_time(lambda: db.history("t", {"id": TRACKED}), 7)
    report("A1", f"history of one key, {COMMITS:,} commits ({versions.num_rows} rows)", elapsed * 1000, "ms",
           target="<= 50 ms", ok=elapsed <= 0.050)
    began = time.perf_counter()
    db.replay("again", start=start.id)
    whole = len([c for c in db.log("again") if "udr.replayed_from" in c.metadata]) / (time.perf_counter() - began)
    report("A3", "replay, commits/s (nothing skipped)", whole, "c/s", baseline=rate, baseline_name="first commit",
           target=">= 0.5x", ok=whole >= 0.5 * rate)
    began = time.perf_counter()
    db.replay("without", start=start.id, skip=(bad.id,))
    skipping = len([c for c in db.log("without") if "udr.replayed_from" in c.metadata]) / (time.perf_counter() - began)
    report("A3", "replay, commits/s (the bad import skipped)", skipping, "c/s", baseline=rate,
           baseline_name="first commit", target=">= 0.5x", ok=skipping >= 0.5 * rate)
    db.close()
    remove(path)


def a2(rows: int = 1_000_000, refreshes: int = 10) -> None:
    rng = np.random.default_rng(42)
    path = scratch("blame")
    data = initial(rows, rng)
    db = udr.open(path / "lake")
    with db.transaction(message="first load") as tx:
        tx.create_table("parcels", data.schema, primary_key=["id"])
        tx.append("parcels", data)
    next_id = rows
    for i in range(refreshes):
        data, next_id = refreshed(data, rng, next_id)
        db.overwrite("parcels", data, message=f"refresh {i}")
    feed, blame = [], []
    # Interleaved, so a slow phase of a shared machine lands on both sides.
    for _ in range(5):
        began = time.perf_counter()
        db.changes("parcels")
        feed.append(time.perf_counter() - began)
        began = time.perf_counter()
        db.blame("parcels")
        blame.append(time.perf_counter() - began)
    report("A2", f"blame of W5 ({rows:,} rows, {refreshes} refreshes)", statistics.median(blame), "s",
           baseline=statistics.median(feed), baseline_name="changes() from the start", target="<= 2.0x",
           ok=statistics.median(blame) <= 2 * statistics.median(feed))
    db.close()
    remove(path)


if __name__ == "__main__":
    a1_a3()
    a2()
