"""N1/N2: the flagship nightly refresh (examples/nightly_refresh) against the naive way, ten nights.

    python bench/bench_nightly.py [--parcels N] [--nights K]

UDR: `nightly.refresh` (77 keyed overwrites in one transaction on a staging branch, master rebuilt with
`CREATE OR REPLACE TABLE ... AS SELECT`, checks, a merge into main, `diff_summary`, staging deleted).
Naive: each night a directory of 77 zstd Parquet files plus master, rebuilt by DuckDB over those files with
the same query (no checks, no atomic publish, no change report). Both get the same in-memory tables each
night; generating them is timed for neither, and the disk is synced between the two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from common import dir_bytes, remove, report, scratch

import udr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "nightly_refresh"))
from lotitude import PARCELS, Lotitude
from nightly import MASTER_QUERY, refresh


def naive_night(root: Path, sources: dict[str, pa.Table]) -> None:
    """Write every compound as a zstd Parquet file in a new directory, then master with DuckDB over them."""
    root.mkdir(parents=True)
    for name, table in sources.items():
        pq.write_table(table, root / f"{name}.parquet", compression="zstd")
    con = duckdb.connect()
    for name in sources:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{root / name}.parquet')")
    con.execute(f"COPY ({MASTER_QUERY}) TO '{root / 'master.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()


def main(parcels: int = PARCELS, nights: int = 10) -> None:
    lake = Lotitude(parcels)
    path = scratch("nightly")
    sources = lake.tables()
    naive_night(path / "naive" / "night-00", sources)
    one_naive = dir_bytes(path / "naive")
    os.sync()
    with udr.open(path / "lake") as db:
        first = refresh(db, sources, label="first load")
        assert first.published, first.reason
        one_udr = dir_bytes(path / "lake")
        udr_times, naive_times, udr_cpu, naive_cpu = [], [], [], []
        for night in range(1, nights + 1):
            sources = lake.night()
            start, cpu = time.perf_counter(), time.process_time()
            naive_night(path / "naive" / f"night-{night:02}", sources)
            naive_times.append(time.perf_counter() - start)
            naive_cpu.append(time.process_time() - cpu)
            os.sync()  # UDR's fsyncs must not pay for writing back the naive night's files
            cpu = time.process_time()
            done = refresh(db, sources, label=f"night {night}")
            udr_cpu.append(time.process_time() - cpu)
            assert done.published, done.reason
            udr_times.append(done.seconds)
            os.sync()
            print(f"night {night:2}: UDR {done.seconds:.2f} s ({udr_cpu[-1]:.2f} s CPU), naive {naive_times[-1]:.2f} s "
                  f"({naive_cpu[-1]:.2f} s CPU); master ~{done.changes['master'].updated:,}", flush=True)
    udr_bytes, naive_bytes = dir_bytes(path / "lake"), dir_bytes(path / "naive")
    per_night, naive_night_s = statistics.median(udr_times), statistics.median(naive_times)
    report("N1", f"time per night, {parcels:,} parcels, 78 tables", per_night, "s", baseline=naive_night_s,
           baseline_name="naive Parquet+DuckDB", target="<= 0.5x", ok=per_night <= 0.5 * naive_night_s)
    # CPU seconds (every thread of this process, DuckDB's included) move less with other work on the machine.
    report("N1", "CPU time per night", statistics.median(udr_cpu), "s", baseline=statistics.median(naive_cpu),
           baseline_name="naive Parquet+DuckDB", target="reported")
    report("N2", f"UDR bytes after {nights} nights / first load", udr_bytes / 1e6, "MB",
           baseline=one_udr / 1e6, baseline_name="first load", target="<= 1.3x", ok=udr_bytes <= 1.3 * one_udr)
    report("N2", f"naive bytes after {nights} nights / one night", naive_bytes / 1e6, "MB",
           baseline=one_naive / 1e6, baseline_name="one night", target="reported")
    remove(path)


def run_nights(run: Callable[[int, int], None], description: str) -> None:
    """`run(parcels, nights)` with both taken from the command line (`--parcels N --nights K`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--parcels", type=int, default=PARCELS)
    parser.add_argument("--nights", type=int, default=10)
    args = parser.parse_args()
    run(args.parcels, args.nights)


if __name__ == "__main__":
    run_nights(main, "N1/N2 nightly refresh benchmark")
