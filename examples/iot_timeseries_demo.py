"""IoT time series: several writers append sensor readings while a subscriber keeps rolling aggregates fresh
and SQL answers batch questions over the same tables.

    python examples/iot_timeseries_demo.py [LAKE]

- Four writer processes, one per site, each commit 60 small batches of readings to the shared `readings`
  table (no primary key: an append-only log).
- A consumer group `rollups` follows `readings` and keeps `sensor_stats` (count, sum, min, max per sensor)
  up to date. Each batch's effect and the group's position commit in one transaction, so the rollup is
  exact: it is checked against a GROUP BY over the raw readings at the end.
- Meanwhile SQL answers a batch question over a consistent snapshot, and time travel answers it again as of
  an earlier commit.

Today commits to one branch serialize: a writer whose commit raced another gets `udr.ConflictError`
(retryable) and commits again. The demo counts those retries; automatic rebase of appends (issue 11) will
make them disappear.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.compute as pc

import udr

SITES = 4
BATCHES = 60
SENSORS_PER_SITE = 25
READINGS = pa.schema([("sensor", pa.int64()), ("ts", pa.int64()), ("value", pa.float64())])
STATS = pa.schema([("sensor", pa.int64()), ("n", pa.int64()), ("total", pa.float64()),
                   ("lo", pa.float64()), ("hi", pa.float64())])


def writer(path: str, site: int, retries: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One site's gateway: append a batch of readings per commit, retrying a commit that raced another."""
    rng = random.Random(site)
    raced = 0
    with udr.open(path) as db:
        for n in range(BATCHES):
            sensors = [site * SENSORS_PER_SITE + s for s in range(SENSORS_PER_SITE)]
            batch = {"sensor": sensors, "ts": [n] * len(sensors),
                     "value": [round(rng.gauss(20.0, 5.0), 3) for _ in sensors]}
            while True:
                try:
                    db.append("readings", batch, message=f"site {site} batch {n}", author=f"gateway-{site}")
                    break
                except udr.ConflictError:
                    raced += 1
    retries.put(raced)


def fold(stats: dict[int, list[float]], changes: pa.Table) -> None:
    """Add appended readings to the per-sensor aggregates (readings are only ever appended)."""
    inserted = changes.filter(pc.equal(changes.column("_change"), "insert"))
    for sensor, value in zip(inserted.column("sensor").to_pylist(), inserted.column("value").to_pylist()):
        n, total, lo, hi = stats.get(sensor, [0, 0.0, value, value])
        stats[sensor] = [n + 1, total + value, min(lo, value), max(hi, value)]


async def rollup(db: udr.Lake, expected_commits: int) -> int:
    """Keep sensor_stats current, one transaction per batch; return the batches applied."""
    applied = 0
    async with db.subscribe("readings", group="rollups") as sub:
        async for batch in sub:
            stats: dict[int, list[float]] = {}
            current = db.read("sensor_stats")
            for row in current.to_pylist():
                stats[row["sensor"]] = [row["n"], row["total"], row["lo"], row["hi"]]
            touched = set(batch.changes.column("sensor").to_pylist())
            fold(stats, batch.changes)
            rows = [{"sensor": s, "n": v[0], "total": v[1], "lo": v[2], "hi": v[3]} for s, v in stats.items()
                    if s in touched]
            with db.transaction(message=f"rollup of {batch.commit.short_id}", author="rollups") as tx:
                tx.upsert("sensor_stats", pa.Table.from_pylist(rows, schema=STATS))
                tx.ack(sub, batch)
            applied += 1
            if applied == expected_commits:
                return applied
    return applied


def main(path: Path) -> None:
    with udr.open(path) as db:
        with db.transaction(message="create tables") as tx:
            tx.create_table("readings", READINGS)
            tx.create_table("sensor_stats", STATS, primary_key=["sensor"])

        # Spawned, not forked: an LMDB environment must not cross a fork (this process has the lake open).
        spawn = multiprocessing.get_context("spawn")
        retries: multiprocessing.Queue = spawn.Queue()  # type: ignore[type-arg]
        start = time.perf_counter()
        writers = [spawn.Process(target=writer, args=(str(path), site, retries)) for site in range(SITES)]
        for w in writers:
            w.start()
        applied = anyio.run(rollup, db, SITES * BATCHES)
        for w in writers:
            w.join()
        raced = sum(retries.get() for _ in writers)
        took = time.perf_counter() - start
        print(f"writers: {SITES} processes committed {SITES * BATCHES} batches in {took:.1f} s "
              f"({raced} commits raced another and were retried)")
        print(f"rollups: {applied} batches applied to sensor_stats, exactly once each")

        exact = db.query("SELECT sensor, count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi "
                         "FROM readings GROUP BY sensor ORDER BY sensor")
        kept = db.query("SELECT * FROM sensor_stats ORDER BY sensor")
        same = exact.column("n").equals(kept.column("n")) and all(
            abs(a - b) < 1e-6 for a, b in zip(exact.column("total").to_pylist(), kept.column("total").to_pylist()))
        print(f"check: sensor_stats equals a GROUP BY over {db.row_count('readings'):,} raw readings: {same}")

        hot = db.query("SELECT sensor, max(value) AS peak FROM readings GROUP BY sensor ORDER BY peak DESC LIMIT 3")
        half = db.log(table="readings")[SITES * BATCHES // 2].id
        earlier = db.query("SELECT count(*) AS n FROM readings", at=half).column("n")[0].as_py()
        print(f"batch SQL: hottest sensors {hot.column('sensor').to_pylist()}; "
              f"as of commit {half[:10]} (time travel) there were {earlier:,} readings")
        assert same and applied == SITES * BATCHES
    print("OK")
    print("""
Try this with Delta Lake: concurrent blind appends commit without conflicts there, but each small batch is a
new Parquet file and a JSON log entry (measured on this machine kind, shared/anchors-results.md,
2026-11-25, deltalake 1.6.6: 12.1 small commits/s and 4,024 files for 1,000 two-table commits, against 11
files for UDR's 1,000 on 2026-12-05), and keeping sensor_stats exact needs the Change Data Feed plus a
Spark streaming job with checkpoints; a consumer polling every 10 ms saw a 71 ms p50 delay.""")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "lake")
