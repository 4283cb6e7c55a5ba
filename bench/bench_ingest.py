"""W1 bulk ingest and streaming import of TPC-H lineitem (SF1); W3 TPC-H Q1 and Q6 over the ingested table.

Baselines, measured in the same run and interleaved with UDR to cancel out machine noise:
- W1 bulk: `pyarrow.parquet.write_table(table, path, compression="zstd")` of the in-memory table.
- W1 streaming: the same baseline time; the peak RSS of `udr import` is measured against a fixed 600 MB.
- W3: DuckDB reading the original tpchgen parquet file through `read_parquet`.

Only the public API (`udr.open`, `append`, `connect`, `stats`) and the `udr` command line are used.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from common import DATA, remove, report, scratch

import udr

TPCH = DATA / "tpch"
LINEITEM = TPCH / "lineitem.parquet"
ROWS = 6_001_215
MB = 1024 * 1024

Q1 = """
SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc,
       count(*) AS count_order
FROM lineitem
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL 90 DAY
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus
"""

Q6 = """
SELECT sum(l_extendedprice * l_discount) AS revenue
FROM lineitem
WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
  AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24
"""

# Runs in a fresh, small Python process: it starts the `udr` command and reads the child's own peak RSS
# from wait4. ru_maxrss survives fork and exec, so a child of the multi-GB benchmark process would report
# the benchmark's size; a child of this ~10 MB process reports its own.
SPAWN = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(2, 1)  # keep the command's own output off the JSON line
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - start, "exit": os.waitstatus_to_exitcode(status),
                  "maxrss_kb": usage.ru_maxrss}))
"""


def ensure_lineitem() -> Path:
    """Generate TPC-H SF1 lineitem with tpchgen-cli unless bench/.data/tpch/lineitem.parquet exists."""
    if LINEITEM.exists():
        return LINEITEM
    tool = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
    partial = TPCH / "partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    print(f"generating TPC-H SF1 lineitem into {TPCH} (tpchgen-cli) ...", flush=True)
    start = time.perf_counter()
    subprocess.run([tool, "parquet", "--scale-factor", "1", "--tables", "lineitem", "--output-dir", str(partial)],
                   check=True)
    os.replace(partial / "lineitem.parquet", LINEITEM)  # only a complete file gets the final name
    partial.rmdir()
    print(f"generated {LINEITEM} in {time.perf_counter() - start:.1f} s", flush=True)
    return LINEITEM


def udr_command() -> str:
    """The `udr` script installed next to this interpreter (not a PATH shim), else the one on PATH."""
    beside = Path(sys.executable).parent / "udr"
    found = str(beside) if beside.exists() else shutil.which("udr")
    if found is None:
        raise SystemExit("the udr command is not installed: pip install -e '.[bench]'")
    return found


def w1_bulk(table: pa.Table, repeat: int = 3) -> tuple[float, Path, Path]:
    """Interleave the parquet baseline with `db.append` on a fresh lake; return the baseline time and the
    scratch directory and lake of the last UDR run (kept for W3)."""
    path = scratch("w1")
    base_file = path / "baseline.parquet"
    base_times, udr_times = [], []
    lake = None
    for i in range(repeat):
        base_file.unlink(missing_ok=True)
        start = time.perf_counter()
        pq.write_table(table, base_file, compression="zstd")
        base_times.append(time.perf_counter() - start)
        if lake is not None:
            remove(lake)
        lake = path / f"lake{i}"
        db = udr.open(lake)
        start = time.perf_counter()
        db.append("lineitem", table, message="W1 bulk ingest")
        udr_times.append(time.perf_counter() - start)
        db.close()
    assert lake is not None
    baseline, measured = statistics.median(base_times), statistics.median(udr_times)
    print(f"     runs: pq.write_table {fmt_times(base_times)}  db.append {fmt_times(udr_times)}", flush=True)
    report("W1", f"bulk ingest {table.num_rows:,} rows (db.append)", measured, "s", baseline=baseline,
           baseline_name="pq.write_table zstd", target="<= 1.1x", ok=measured <= 1.1 * baseline)
    with udr.open(lake) as db:
        stored = db.stats().stored_bytes
    zstd_bytes = base_file.stat().st_size
    report("W1", "stored bytes after bulk ingest (stats.stored_bytes)", stored / 1e6, "MB",
           baseline=zstd_bytes / 1e6, baseline_name="zstd parquet file")
    base_file.unlink()
    return baseline, path, lake


def w1_stream(source: Path, baseline: float) -> None:
    """`udr import` of the parquet file, timed and with its peak RSS, from a small parent process."""
    path = scratch("w1s")
    lake = path / "lake"
    try:
        command = udr_command()
        subprocess.run([command, "--lake", str(lake), "init"], check=True, capture_output=True)
        run = subprocess.run([sys.executable, "-c", SPAWN, command, "--lake", str(lake), "import", "lineitem",
                              str(source)], capture_output=True, text=True, check=True)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        if result["exit"] != 0:
            raise SystemExit(f"udr import failed with exit code {result['exit']}:\n{run.stderr}")
        with udr.open(lake) as db:
            con = db.connect()
            rows = con.sql("SELECT count(*) FROM lineitem").fetchall()[0][0]
            con.close()
        peak = result["maxrss_kb"] / 1024
        report("W1", f"udr import peak RSS ({rows:,} rows, streaming)", peak, "MB",
               target="<= 600 MB", ok=peak <= 600 and rows == ROWS)
        report("W1", "udr import time (streaming, CLI)", result["seconds"], "s", baseline=baseline,
               baseline_name="pq.write_table zstd")
    finally:
        remove(path)


def w3(source: Path, db: udr.Lake, repeat: int = 7) -> None:
    """TPC-H Q1 and Q6: UDR's DuckDB connection against DuckDB on the original file; warm, interleaved."""
    for name, query in (("Q1", Q1), ("Q6", Q6)):
        baseline_con = duckdb.connect()
        baseline_con.execute(f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{source}')")
        con = db.connect()
        expected = baseline_con.sql(query).fetchall()   # warm-up, and a check that both answer the same
        got = con.sql(query).fetchall()
        same = same_rows(expected, got)
        base_times, udr_times = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            baseline_con.sql(query).fetchall()
            base_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            con.sql(query).fetchall()
            udr_times.append(time.perf_counter() - start)
        con.close()
        baseline_con.close()
        baseline, measured = statistics.median(base_times), statistics.median(udr_times)
        report("W3", f"TPC-H {name} (db.connect), same result={same}", measured * 1000, "ms",
               baseline=baseline * 1000, baseline_name="DuckDB on tpchgen parquet", target="<= 1.0x",
               ok=measured <= baseline and same)


def same_rows(a: list[tuple], b: list[tuple]) -> bool:
    """Rows equal, floats to 1e-9 relative (a sum's last bits depend on the order it was added in)."""
    if len(a) != len(b):
        return False
    for row_a, row_b in zip(a, b):
        if len(row_a) != len(row_b):
            return False
        for x, y in zip(row_a, row_b):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


def fmt_times(times: list[float]) -> str:
    return "/".join(f"{t:.2f}" for t in times) + " s"


def main() -> None:
    source = ensure_lineitem()
    table = pq.read_table(source)
    if table.num_rows != ROWS:
        raise SystemExit(f"{source} has {table.num_rows:,} rows, expected {ROWS:,} (TPC-H SF1); delete it")
    baseline, path, lake = w1_bulk(table)
    del table  # free ~2 GB before the queries
    gc.collect()
    try:
        with udr.open(lake) as db:
            w3(source, db)
    finally:
        remove(path)
    w1_stream(source, baseline)


if __name__ == "__main__":
    main()
