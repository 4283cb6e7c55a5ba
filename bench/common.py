"""Shared helpers for UDR benchmarks: timing, scratch lakes, and one printed line per measured ratio.

Benchmarks never assert a time: they print the measured figure, the baseline measured in the same run,
their ratio and the target, and append the same as JSON to bench/.data/results.jsonl.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"


def scratch(name: str) -> Path:
    """A fresh empty directory under bench/.data/tmp (on the same disk as the repository)."""
    root = DATA / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=name + "-", dir=root))
    return path


def remove(path: Path) -> None:
    """Delete a scratch directory."""
    shutil.rmtree(path, ignore_errors=True)


def median_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of `fn` over `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path` (LMDB files count by their allocated size)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            total += min(st.st_size, st.st_blocks * 512)
    return total


def report(bench: str, metric: str, value: float, unit: str, *, baseline: float | None = None,
           baseline_name: str = "", target: str = "", ok: bool | None = None) -> None:
    """Print one result line (and record it): value, baseline, ratio, target, verdict."""
    ratio = value / baseline if baseline else None
    parts = [f"{bench:4} {metric:44} {value:12.4g} {unit:6}"]
    if baseline is not None:
        parts.append(f"baseline {baseline_name} {baseline:.4g} {unit}  ratio {ratio:.3f}x")
    if target:
        parts.append(f"target {target}")
    if ok is not None:
        parts.append("MET" if ok else "MISSED")
    print("  ".join(parts), flush=True)
    DATA.mkdir(parents=True, exist_ok=True)
    with open(DATA / "results.jsonl", "a") as fh:
        fh.write(json.dumps({
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": f"{platform.node()} {os.cpu_count()} cores",
            "bench": bench, "metric": metric, "value": value, "unit": unit, "baseline": baseline,
            "baseline_name": baseline_name, "ratio": ratio, "target": target, "ok": ok,
        }) + "\n")
