"""Change streams without Kafka: an exactly-once consumer that survives `kill -9`.

    python examples/changelog_demo.py [LAKE]

Three processes share one lake directory:
- a *producer* commits orders one transaction at a time: new orders, changed amounts, cancellations;
- a *consumer* follows the `orders` change stream as consumer group `totals` and keeps a derived table,
  `customer_totals` (order count and amount per customer). Each batch's effect and the group's new
  position commit in ONE transaction (`tx.upsert(...)` + `tx.ack(sub, batch)`), so a crash can neither
  lose a batch nor apply it twice;
- this script, which SIGKILLs the consumer midway, restarts it, and finally checks that
  `customer_totals` equals the same figures recomputed from `orders` in one SQL query. It prints OK.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pyarrow as pa

import udr

ORDERS = pa.schema([("order_id", pa.int64()), ("customer", pa.string()), ("amount", pa.int64())])
TOTALS = pa.schema([("customer", pa.string()), ("orders", pa.int64()), ("amount", pa.int64())])
CUSTOMERS = ("acme", "globex", "initech", "umbrella", "wonka")
COMMITS = 40
# How each kind of change row moves a customer's totals: (orders, amount) multipliers.
EFFECT = {"insert": 1, "update_after": 1, "update_before": -1, "delete": -1}


# -- the producer ------------------------------------------------------------------------------------


def produce(lake: Path) -> None:
    """Commit COMMITS order transactions, then a row in `done` that tells the consumer to stop."""
    with udr.open(lake) as db:
        for i in range(COMMITS):
            if i % 5 == 4:
                db.upsert("orders", {"order_id": [i - 3], "customer": [CUSTOMERS[(i // 2) % 5]], "amount": [500 + i]},
                          message=f"order {i - 3} amended")
            elif i % 9 == 8:
                db.delete("orders", keys={"order_id": [i - 7]}, message=f"order {i - 7} cancelled")
            else:
                db.append("orders", {"order_id": [i], "customer": [CUSTOMERS[(i * 3) % 5]], "amount": [10 * i + 5]},
                          message=f"order {i} placed")
            time.sleep(0.01)
        db.append("done", {"at": [time.time()]}, message="producer finished")


# -- the exactly-once consumer --------------------------------------------------------------------------


async def consume(lake: Path) -> None:
    """Fold each `orders` batch into `customer_totals`, committing the fold and the ack together."""
    with udr.open(lake) as db:
        async with db.subscribe(["done", "orders"], group="totals") as sub:
            async for batch in sub:
                if batch.table == "done":
                    await sub.ack(batch)
                    return
                delta: dict[str, tuple[int, int]] = {}
                for row in batch.changes.to_pylist():
                    sign = EFFECT[row["_change"]]
                    count, amount = delta.get(row["customer"], (0, 0))
                    delta[row["customer"]] = (count + sign, amount + sign * row["amount"])
                with db.transaction(message=f"totals after {batch.commit.short_id}") as tx:
                    current = {r["customer"]: r for r in tx.read("customer_totals").to_pylist()}
                    names = sorted(delta)
                    tx.upsert("customer_totals", {
                        "customer": names,
                        "orders": [current.get(n, {"orders": 0})["orders"] + delta[n][0] for n in names],
                        "amount": [current.get(n, {"amount": 0})["amount"] + delta[n][1] for n in names],
                    })
                    tx.ack(sub, batch)  # the position moves in this very commit
                print(f"applied {batch.commit.short_id}", flush=True)


# -- the orchestration -----------------------------------------------------------------------------------


def _spawn(role: str, lake: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, role, str(lake)], stdout=subprocess.PIPE, text=True)


def main(lake: Path) -> int:
    started = time.monotonic()
    with udr.open(lake) as db, db.transaction(message="set up") as tx:
        tx.create_table("orders", ORDERS, primary_key=["order_id"])
        tx.create_table("customer_totals", TOTALS, primary_key=["customer"])
        tx.create_table("done", pa.schema([("at", pa.float64())]))
    consumer = _spawn("--consumer", lake)
    producer = _spawn("--producer", lake)
    assert consumer.stdout is not None
    applied = 0
    while applied < COMMITS // 4 and consumer.stdout.readline():
        applied += 1
    os.kill(consumer.pid, signal.SIGKILL)  # midway, possibly inside a transaction
    consumer.wait()
    print(f"killed the consumer (kill -9) after it reported {applied} batches; restarting it")
    consumer = _spawn("--consumer", lake)
    producer.wait()
    consumer.wait()
    with udr.open(lake) as db:
        derived = sorted((r["customer"], r["orders"], r["amount"]) for r in db.read("customer_totals").to_pylist()
                         if r["orders"] != 0)
        batch = sorted(db.sql("SELECT customer, count(*), sum(amount)::BIGINT FROM orders GROUP BY customer")
                       .fetchall())
        [group] = db.groups()
        print(f"group {group.name}: at {group.position[:10]}, {group.lag_commits} commits behind")
    print(f"customer_totals: {derived}")
    ok = derived == batch and producer.returncode == 0 and consumer.returncode == 0
    print(f"{'OK' if ok else 'MISMATCH'}: derived table {'equals' if ok else 'differs from'} the batch "
          f"recomputation ({time.monotonic() - started:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--producer":
        produce(Path(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "--consumer":
        anyio.run(consume, Path(sys.argv[2]))
    else:
        target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="udr-changelog-")) / "lake"
        sys.exit(main(target))
