"""C1/C2: the `udr` command line on a big table, and its start-up time.

- C1: `udr changes t` (the table view: a page of 1,000 rows and a footer) on a table whose one commit
  inserted 3,000,000 rows, run as a real process. Wall time and peak RSS, sampled with psutil every 5 ms;
  baseline: the same process running `udr tables` (opening the lake and printing a line).
- C2: `udr --version` and `udr --help`, median of 5 process runs each; baseline: `python -c "import udr"`,
  which every `udr` process pays because the console script lives in the `udr` package.

Run: python bench/bench_cli.py   (or python bench/run.py cli). Never asserts a time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
from common import remove, report, scratch

import udr

ROWS = 3_000_000


def udr_command() -> list[str]:
    found = shutil.which("udr")
    return [found] if found else [sys.executable, "-m", "udr.cli"]


def run_measured(args: list[str]) -> tuple[float, float]:
    """Run `args` to completion; return its wall time in seconds and its peak RSS in MB (sampled)."""
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    if child.wait() != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {child.stderr.read().decode() if child.stderr else ''}")
    return seconds, peak / 1e6


def big_lake(path: Path) -> None:
    rng = np.random.default_rng(7)
    rows = pa.table({
        "id": np.arange(ROWS, dtype=np.int64),
        "amount": rng.random(ROWS),
        "status": pa.array(rng.choice(["open", "paid", "shipped"], ROWS)),
    })
    with udr.open(path) as db:
        db.append("orders", rows, message=f"{ROWS:,} orders")


def median_seconds(args: list[str], repeat: int = 5) -> float:
    return statistics.median(run_measured(args)[0] for _ in range(repeat))


def main() -> None:
    lake = scratch("cli")
    try:
        big_lake(lake)
        command = [*udr_command(), "--lake", str(lake)]
        base_time, base_peak = run_measured([*command, "tables"])
        seconds, peak = run_measured([*command, "changes", "orders"])
        report("C1", f"udr changes, {ROWS:,}-row table, time", seconds, "s", baseline=base_time,
               baseline_name="udr tables", target="<= 2 s", ok=seconds <= 2)
        report("C1", f"udr changes, {ROWS:,}-row table, peak RSS", peak, "MB", baseline=base_peak,
               baseline_name="udr tables")
    finally:
        remove(lake)
    imported = median_seconds([sys.executable, "-c", "import udr"])
    for flag in ("--version", "--help"):
        seconds = median_seconds([*udr_command(), flag])
        report("C2", f"udr {flag}", seconds, "s", baseline=imported, baseline_name="import udr",
               target="<= 0.3 s", ok=seconds <= 0.3)


if __name__ == "__main__":
    main()
