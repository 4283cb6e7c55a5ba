"""Child processes for the cross-process stream tests, run as `python stream_workers.py COMMAND LAKE ...`.

- `produce LAKE N`: N commits to `orders` (inserts, then updates and deletes of earlier orders), one at a
  time, then one row in `control` that tells consumers the run is over. Prints `committed SEQ` per commit.
- `consume LAKE GROUP BACKEND`: the exactly-once consumer: keeps `totals` (amount per customer) equal to
  the sum over `orders`, committing each batch's effect together with its ack (`Transaction.ack`). Prints
  `applied SEQ` after each commit; exits 0 after the control row.
- `hold LAKE GROUP`: subscribes with GROUP, prints `holding`, then sleeps until killed.

The module is also imported by the tests for `setup_lake`, `expected_totals` and the schemas.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.compute as pc

import udr

ORDERS = pa.schema([("id", pa.int64()), ("customer", pa.string()), ("amount", pa.int64())])
TOTALS = pa.schema([("customer", pa.string()), ("total", pa.int64())])
CONTROL = pa.schema([("done", pa.bool_())])
CUSTOMERS = ("ann", "bo", "cy", "di", "ed")
SIGN = {"insert": 1, "update_after": 1, "update_before": -1, "delete": -1}


def setup_lake(path: Path) -> None:
    """An empty lake with the workload's tables."""
    with udr.open(path) as db, db.transaction(message="setup") as tx:
        tx.create_table("orders", ORDERS, primary_key=["id"])
        tx.create_table("totals", TOTALS, primary_key=["customer"])
        tx.create_table("control", CONTROL)


def expected_totals(db: udr.Lake) -> dict[str, int]:
    """The totals recomputed in one batch from `orders`."""
    rows = db.sql("SELECT customer, sum(amount)::BIGINT FROM orders GROUP BY customer").fetchall()
    return {str(c): int(t) for c, t in rows if t != 0}


def produce(path: Path, n: int) -> None:
    with udr.open(path) as db:
        for i in range(n):
            if i % 4 == 3:  # an update of an earlier order
                commit = db.upsert("orders", {"id": [i // 2], "customer": [CUSTOMERS[i % 5]], "amount": [1000 + i]})
            elif i % 7 == 6:  # a delete of an earlier order
                commit = db.delete("orders", keys={"id": [i // 3]})
            else:
                commit = db.upsert("orders", {"id": [i, i + 10_000],
                                              "customer": [CUSTOMERS[i % 5], CUSTOMERS[(i + 2) % 5]],
                                              "amount": [i + 1, 2 * i + 1]})
            print(f"committed {commit.seq}", flush=True)
        db.append("control", {"done": [True]})


def _deltas(changes: pa.Table) -> dict[str, int]:
    signs = pa.array([SIGN[c] for c in changes.column("_change").to_pylist()], pa.int64())
    signed = pc.multiply(changes.column("amount"), signs)
    out: dict[str, int] = {}
    for customer, amount in zip(changes.column("customer").to_pylist(), signed.to_pylist()):
        out[customer] = out.get(customer, 0) + amount
    return out


async def consume(path: Path, group: str) -> None:
    with udr.open(path) as db:
        async with db.subscribe(["control", "orders"], group=group) as sub:
            async for batch in sub:
                if batch.table == "control":
                    await sub.ack(batch)
                    return
                deltas = _deltas(batch.changes)
                with db.transaction(message=f"totals for {batch.commit.short_id}") as tx:
                    current = {r["customer"]: r["total"] for r in tx.read("totals").to_pylist()}
                    rows = [(c, current.get(c, 0) + d) for c, d in sorted(deltas.items())]
                    tx.upsert("totals", {"customer": [c for c, _ in rows], "total": [t for _, t in rows]})
                    tx.ack(sub, batch)
                print(f"applied {batch.commit.seq}", flush=True)


def hold(path: Path, group: str) -> None:
    db = udr.open(path)
    db.subscribe(group=group)
    print("holding", flush=True)
    time.sleep(3600)


def main(argv: list[str]) -> None:
    command, lake = argv[0], Path(argv[1])
    if command == "produce":
        produce(lake, int(argv[2]))
    elif command == "consume":
        anyio.run(consume, lake, argv[2], backend=argv[3])
    elif command == "hold":
        hold(lake, argv[2])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
