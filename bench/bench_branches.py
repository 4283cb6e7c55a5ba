"""Branch creation cost against history length, and merging two 1% edits of a 1M-row keyed table."""

from __future__ import annotations

import itertools
import time

import duckdb
import numpy as np
import pyarrow as pa
from bench_refresh import initial
from common import median_time, remove, report, scratch

import udr


def branch_creation(big_rows: int = 6_000_000, history: int = 10_000) -> None:
    path = scratch("branch")
    db = udr.open(path / "lake")
    rng = np.random.default_rng(1)
    db.append("big", initial(big_rows, rng), message="6M rows")
    for i in range(10):
        db.append("small", {"i": [i]})
    numbers = itertools.count(1)

    def create() -> None:
        db.create_branch(f"b{next(numbers)}")
    short = median_time(create, 9)
    for i in range(history - 12):
        db.append("small", {"i": [i]})
    chunks_before = db.stats().chunks
    long = median_time(create, 9)
    new_chunks = db.stats().chunks - chunks_before
    report("BR", "create branch, ~10-commit history (6M-row table)", short * 1000, "ms", target="< 5 ms",
           ok=short < 0.005)
    report("BR", f"create branch, {history}-commit history", long * 1000, "ms", baseline=short * 1000,
           baseline_name="10-commit history", target="< 5 ms", ok=long < 0.005)
    report("BR", "new chunks written by branch creation", new_chunks, "", target="0", ok=new_chunks == 0)
    db.close()
    remove(path)


def merge(rows: int = 1_000_000) -> None:
    path = scratch("merge")
    db = udr.open(path / "lake")
    rng = np.random.default_rng(2)
    base = initial(rows, rng)
    with db.transaction() as tx:
        tx.create_table("parcels", base.schema, primary_key=["id"])
        tx.append("parcels", base)
    db.create_branch("feature")
    ids = rng.permutation(rows)
    ours_ids, theirs_ids = ids[: rows // 100], ids[rows // 100 : rows // 50]

    def edited(keys: np.ndarray, column: str) -> pa.Table:
        picked = base.take(pa.array(np.sort(keys)))
        idx = picked.schema.get_field_index(column)
        return picked.set_column(idx, column, pa.array(picked.column(column).to_numpy() + 1))

    db.upsert("parcels", edited(theirs_ids, "value"), branch="feature")
    db.upsert("parcels", edited(ours_ids, "zone"))
    start = time.perf_counter()
    commit = db.merge("feature")
    merge_time = time.perf_counter() - start
    # Baseline: the same three-way row diff computed with DuckDB alone over Arrow tables in memory.
    main_rows = db.read("parcels", at="main~1")
    feat_rows = db.read("parcels", branch="feature")
    def duck() -> None:
        con = duckdb.connect()
        con.register("b", base)
        con.register("o", main_rows)
        con.register("t", feat_rows)
        cols = [c for c in base.column_names if c != "id"]

        def differs(x: str) -> str:
            return " OR ".join(f"{x}.{c} IS DISTINCT FROM b.{c}" for c in cols)

        con.sql(f"SELECT b.id FROM b JOIN o USING (id) WHERE {differs('o')}").fetchall()
        con.sql(f"SELECT b.id FROM b JOIN t USING (id) WHERE {differs('t')}").fetchall()
        con.close()
    duck_time = median_time(duck, 3)
    ok_rows = db.read("parcels").num_rows == rows and commit.tables["parcels"].updated == len(theirs_ids)
    report("MG", f"merge 1%+1% of 1M keyed rows (correct={ok_rows})", merge_time, "s", baseline=duck_time,
           baseline_name="DuckDB diff alone", target="< 2 s and <= 2x",
           ok=merge_time < 2 and merge_time <= 2 * duck_time)
    db.close()
    remove(path)


if __name__ == "__main__":
    branch_creation()
    merge()
