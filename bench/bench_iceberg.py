"""I1-I3: publishing as Apache Iceberg. I1 publishes the W1 table (TPC-H SF1 lineitem, 6M rows): bytes
written against the table's data bytes, time against the W1 ingest time measured just before. I2 times a
publish after one W5 keyed refresh (one new commit). I3 runs TPC-H Q1 and Q6 with polars on the published
table and on a plain Iceberg copy of the same data written by pyiceberg itself (needs sqlalchemy for
pyiceberg's SQLite catalog).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from bench_ingest import ensure_lineitem
from bench_refresh import ROWS as W5_ROWS
from bench_refresh import initial, refreshed
from common import remove, report, scratch
from pyiceberg.table import StaticTable

import udr

# Without the optional polars_iceberg planner polars plans with pyiceberg anyway, and warns.
os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def i1(source: Path) -> tuple[Path, Path]:
    table = pq.read_table(source)
    lake = scratch("i1-lake")
    dest = scratch("i1-ice")
    with udr.open(lake) as db:
        _, ingest = _timed(lambda: db.append("lineitem", table, message="W1 bulk ingest"))
        published, seconds = _timed(lambda: db.publish_iceberg(dest))
        data = sum(p.stat().st_size for p in (lake / "chunks").rglob("*.parquet"))
    report("I1", "publish W1 lineitem: bytes written", published.bytes_written, "B", baseline=data,
           baseline_name="table data bytes", target="<= 0.01x", ok=published.bytes_written <= 0.01 * data)
    report("I1", "publish W1 lineitem: time", seconds, "s", baseline=ingest, baseline_name="W1 ingest",
           target="<= 0.05x", ok=seconds <= 0.05 * ingest)
    return lake, dest


def i2(refreshes: int = 5) -> None:
    rng = np.random.default_rng(7)
    lake, dest = scratch("i2-lake"), scratch("i2-ice")
    try:
        with udr.open(lake) as db:
            data = initial(W5_ROWS, rng)
            next_id = W5_ROWS
            db.create_table("parcels", data.schema, primary_key=["id"])
            db.overwrite("parcels", data)
            db.publish_iceberg(dest)
            times = []
            for _ in range(refreshes):
                data, next_id = refreshed(data, rng, next_id)
                db.overwrite("parcels", data)
                _, seconds = _timed(lambda: db.publish_iceberg(dest))
                times.append(seconds)
            rows = StaticTable.from_metadata(str(dest / "parcels")).scan().to_arrow().num_rows
            assert rows == db.row_count("parcels"), "published table differs"
        median = statistics.median(times)
        report("I2", "publish after one W5 refresh (median)", median * 1000, "ms", target="<= 50 ms",
               ok=median <= 0.05)
    finally:
        remove(lake)
        remove(dest)


def _q1(frame: pl.LazyFrame) -> pl.DataFrame:
    return (frame.filter(pl.col("l_shipdate") <= pl.date(1998, 9, 2))
            .group_by("l_returnflag", "l_linestatus")
            .agg(pl.col("l_quantity").sum().alias("sum_qty"),
                 pl.col("l_extendedprice").sum().alias("sum_base_price"),
                 (pl.col("l_extendedprice") * (1 - pl.col("l_discount"))).sum().alias("sum_disc_price"),
                 (pl.col("l_extendedprice") * (1 - pl.col("l_discount")) * (1 + pl.col("l_tax")))
                 .sum().alias("sum_charge"),
                 pl.col("l_quantity").mean().alias("avg_qty"), pl.len().alias("count_order"))
            .sort("l_returnflag", "l_linestatus").collect())


def _q6(frame: pl.LazyFrame) -> pl.DataFrame:
    return (frame.filter((pl.col("l_shipdate") >= pl.date(1994, 1, 1)) & (pl.col("l_shipdate") < pl.date(1995, 1, 1))
                         & pl.col("l_discount").is_between(0.05, 0.07) & (pl.col("l_quantity") < 24))
            .select((pl.col("l_extendedprice") * pl.col("l_discount")).sum().alias("revenue")).collect())


def i3(source: Path, published: Path, repeat: int = 5) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = scratch("i3-plain")
    try:
        catalog = SqlCatalog("plain", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=warehouse.as_uri())
        catalog.create_namespace("tpch")
        table = pq.read_table(source)
        plain = catalog.create_table("tpch.lineitem", schema=table.schema)
        plain.append(table)
        ours = StaticTable.from_metadata(str(published / "lineitem"))
        for name, query in (("Q1", _q1), ("Q6", _q6)):
            a = query(pl.scan_iceberg(ours))
            b = query(pl.scan_iceberg(plain))
            assert a.equals(b), f"{name} differs"
            times: dict[str, list[float]] = {"ours": [], "plain": []}
            for _ in range(repeat):  # interleaved, warm
                times["ours"].append(_timed(lambda q=query: q(pl.scan_iceberg(ours)))[1])
                times["plain"].append(_timed(lambda q=query: q(pl.scan_iceberg(plain)))[1])
            ours_t, plain_t = statistics.median(times["ours"]), statistics.median(times["plain"])
            report("I3", f"TPC-H {name} polars on the published table", ours_t, "s", baseline=plain_t,
                   baseline_name="pyiceberg-written copy", target="<= 1.1x", ok=ours_t <= 1.1 * plain_t)
    finally:
        remove(warehouse)


def main() -> None:
    source = ensure_lineitem()
    lake, dest = i1(source)
    try:
        i3(source, dest)
    finally:
        remove(lake)
        remove(dest)
    i2()


if __name__ == "__main__":
    main()
