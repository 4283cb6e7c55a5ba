"""`Transaction.overwrite_many`: several overwrites in one call, the keyed tables compared side by side on
worker threads, must stage exactly what the same overwrites one after another stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udr
from udr.log.format import CommitId

Tables = dict[str, pa.Table]


def keyed(seed: int, n: int, *, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": pa.array(np.arange(start, start + n, dtype=np.int64)),
                     "status": pa.array(rng.choice(["new", "paid", "sent"], n)),
                     "amount": pa.array(np.round(rng.random(n) * 100, 2))})


def changed(table: pa.Table, seed: int, *, drop: int = 0, add: int = 0) -> pa.Table:
    """`table` with a few amounts changed, its first `drop` rows gone and `add` new ids at the end."""
    rng = np.random.default_rng(seed)
    amount = table.column("amount").to_numpy().copy()
    rows = rng.choice(len(amount), len(amount) // 50, replace=False)
    amount[rows] += 1
    out = table.set_column(2, "amount", pa.array(amount)).slice(drop)
    if add:
        out = pa.concat_tables([out, keyed(seed, add, start=int(table.column("id").to_numpy().max()) + 1)])
    return out


def first_load() -> Tables:
    return {f"t{i}": keyed(i, 30_000 + 1_000 * i) for i in range(4)} | {"log": keyed(9, 50)}


def nights() -> list[Tables]:
    """Two nights of every table changing: updates, keys dropped and added (moved rows on night two)."""
    night1 = {name: changed(t, 10 + i, drop=i * 3, add=i * 5) for i, (name, t) in enumerate(first_load().items())}
    night2 = {name: changed(t, 20 + i, drop=i, add=7) for i, (name, t) in enumerate(night1.items())}
    night2["fresh"] = keyed(3, 10)  # not in the lake yet: created without a key, as `overwrite` does
    return [night1, night2]


def run(path: Path, write: Callable[[udr.Transaction, Tables], None]) -> tuple[udr.Lake, list[CommitId]]:
    db = udr.open(path)
    with db.transaction() as tx:
        for name, table in first_load().items():
            tx.create_table(name, table.schema, primary_key=None if name == "log" else ["id"])
            tx.append(name, table)
    commits = []
    for night in nights():
        with db.transaction(message="night") as tx:
            write(tx, night)
        assert tx.committed is not None
        commits.append(CommitId(tx.committed.id))
    return db, commits


def one_by_one(tx: udr.Transaction, tables: Tables) -> None:
    for name, table in tables.items():
        tx.overwrite(name, table)


def test_stages_what_overwrites_one_by_one_stage(tmp_path: Path) -> None:
    serial, serial_commits = run(tmp_path / "serial", one_by_one)
    parallel, parallel_commits = run(tmp_path / "parallel", lambda tx, tables: tx.overwrite_many(tables))
    try:
        for a, b in zip(serial_commits, parallel_commits):
            ops_a = serial._handle.ctx.log.get_commit(a).tables
            ops_b = parallel._handle.ctx.log.get_commit(b).tables
            # The unkeyed table's new rows come out of DuckDB in no set order, so its chunk may differ.
            assert {n: op for n, op in ops_a.items() if n != "log"} == {n: op for n, op in ops_b.items() if n != "log"}
            assert dataclasses.replace(ops_a["log"], add=()) == dataclasses.replace(ops_b["log"], add=())
            assert any(op.updated and op.deleted and op.inserted for op in ops_b.values())
        for name, table in nights()[-1].items():
            assert parallel.read(name).sort_by("id").equals(table.sort_by("id"))
    finally:
        serial.close()
        parallel.close()


def test_a_bad_key_raises_for_the_first_bad_table_in_order(db: udr.Lake) -> None:
    load = first_load()
    with db.transaction() as tx:
        for name, table in load.items():
            tx.create_table(name, table.schema, primary_key=["id"])
            tx.append(name, table)
    head = db.resolve("main")
    bad = dict(load, t1=pa.concat_tables([load["t1"], load["t1"].slice(5, 1)]),
               t3=pa.concat_tables([load["t3"], load["t3"].slice(0, 1)]))
    with pytest.raises(udr.KeyViolation, match=r"table 't1': duplicate primary key \{'id': 5\}"), \
            db.transaction() as tx:
        tx.overwrite_many(bad)
    assert db.resolve("main") == head
