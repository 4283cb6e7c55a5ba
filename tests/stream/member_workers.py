"""Child processes for the consumer-group member tests, run as `python member_workers.py COMMAND LAKE ...`.

- `produce LAKE N SEED`: N commits, one at a time: upserts and deletes of random keys of the keyed table
  `ev`, and appends to the unkeyed table `log`. Prints `done` at the end.
- `member LAKE NAME`: joins group `derive` as member NAME and keeps the derived tables exactly once, each
  batch's effect committed with its ack (`Transaction.ack`), retrying on `ConflictError`:
  `derived(k, v, total)`: the last value set for key `k` (order-sensitive) and the signed sum of its
  changes (duplicate- and loss-sensitive); `logsum(p, total)`: per partition, the sum of `log.x`.
  Prints `ready` once subscribed, then `applied SEQ TABLE PARTITION` per batch, until killed.

Also imported by the tests for `setup_lake` and `expected`.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.compute as pc

import udr

EV = pa.schema([("k", pa.int64()), ("v", pa.int64())])
LOG = pa.schema([("x", pa.int64())])
DERIVED = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("total", pa.int64())])
LOGSUM = pa.schema([("p", pa.int64()), ("total", pa.int64())])
SIGN = {"insert": 1, "update_after": 1, "update_before": -1, "delete": -1}
KEYS = 40


def setup_lake(path: Path | str, cache: Path | None = None) -> None:
    """An empty lake with the workload's tables (`path` a URL: a lake in object storage, cached in `cache`)."""
    with udr.open(path, cache=cache) as db, db.transaction(message="setup") as tx:
        tx.create_table("ev", EV, primary_key=["k"])
        tx.create_table("log", LOG)
        tx.create_table("derived", DERIVED, primary_key=["k"])
        tx.create_table("logsum", LOGSUM, primary_key=["p"])


def expected(db: udr.Lake) -> tuple[dict[int, tuple[int | None, int]], int]:
    """What the members must have derived, recomputed in one batch: key -> (value or None, total) for
    every key ever written, and the sum of `log.x`."""
    current = {int(k): int(v) for k, v in db.sql("SELECT k, v FROM ev").fetchall()}
    ever = {int(k) for (k,) in db.sql("SELECT DISTINCT k FROM derived").fetchall()} | set(current)
    logsum = db.sql("SELECT coalesce(sum(x), 0)::BIGINT FROM log").fetchall()[0][0]
    return {k: (current.get(k), current.get(k, 0)) for k in ever}, int(logsum)


def derived(db: udr.Lake) -> tuple[dict[int, tuple[int | None, int]], int]:
    """What the members derived, in the shape of `expected`."""
    rows = db.sql("SELECT k, v, total FROM derived").fetchall()
    logsum = db.sql("SELECT coalesce(sum(total), 0)::BIGINT FROM logsum").fetchall()[0][0]
    return {int(k): (None if v is None else int(v), int(t)) for k, v, t in rows}, int(logsum)


def produce(path: Path | str, n: int, seed: int, cache: Path | None = None) -> None:
    rng = random.Random(seed)
    with udr.open(path, cache=cache) as db:
        for _ in range(n):
            choice = rng.random()
            if choice < 0.6:
                keys = rng.sample(range(KEYS), rng.randint(1, 6))
                db.upsert("ev", {"k": keys, "v": [rng.randint(1, 1000) for _ in keys]})
            elif choice < 0.75:
                db.delete("ev", keys={"k": rng.sample(range(KEYS), 2)})
            else:
                db.append("log", {"x": [rng.randint(1, 100) for _ in range(rng.randint(1, 4))]})
    print("done", flush=True)


def apply_batch(tx: udr.Transaction, batch: udr.ChangeBatch) -> None:
    """Derive `batch` into `logsum` or `derived` inside `tx`."""
    if batch.table == "log":
        old = {r["p"]: r["total"] for r in tx.read("logsum").to_pylist()}
        p = batch.partition if batch.partition is not None else -1
        tx.upsert("logsum", {"p": [p], "total": [old.get(p, 0) + pc.sum(batch.changes.column("x")).as_py()]})
        return
    old_rows = {r["k"]: (r["v"], r["total"]) for r in tx.read("derived").to_pylist()}
    state: dict[int, tuple[int | None, int]] = {}
    for row in batch.changes.to_pylist():
        k = row["k"]
        v, total = state.get(k, old_rows.get(k, (None, 0)))
        change = row["_change"]
        total += SIGN[change] * row["v"]
        if change in ("insert", "update_after"):
            v = row["v"]
        elif change == "delete":
            v = None
        state[k] = (v, total)
    keys = sorted(state)
    tx.upsert("derived", {"k": keys, "v": [state[k][0] for k in keys], "total": [state[k][1] for k in keys]})


async def derive(db: udr.Lake, sub: udr.Subscription) -> None:
    """Print `ready`, then apply each batch of `sub` with its ack in one transaction, printing `applied SEQ
    TABLE PARTITION`, until killed."""
    async with sub:
        print("ready", flush=True)
        async for batch in sub:
            while True:
                try:
                    with db.transaction(message=f"derive {batch.commit.seq}") as tx:
                        apply_batch(tx, batch)
                        tx.ack(sub, batch)
                    break
                except udr.ConflictError:
                    continue  # another member committed to the same derived table first
            print(f"applied {batch.commit.seq} {batch.table} {batch.partition}", flush=True)


async def member(path: Path, name: str) -> None:
    with udr.open(path) as db:
        await derive(db, db.subscribe(["ev", "log"], group="derive", member=name, partitions=6))


def main(argv: list[str]) -> None:
    command, lake = argv[0], Path(argv[1])
    if command == "produce":
        produce(lake, int(argv[2]), int(argv[3]))
    elif command == "member":
        anyio.run(member, lake, argv[2])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
