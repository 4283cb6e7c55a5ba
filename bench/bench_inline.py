"""Q1: SQL over inline rows, and what a query costs to set up (`db.connect()`), at the head and in the past.

The lake: 500 appends of 1,000 rows each to `events` (W4's history), so the head holds Parquet chunks (the
runs of small writes flushed) plus a tail of up to 255 inline fragments, and `main~250` other ones.
Each figure is the median of 21 runs, in one process; `--baseline SRC` also runs the same measurements in a
child process whose `udr` is imported from SRC (e.g. an export of an older commit: `git archive`), on the
same lake, and reports the ratio. Never asserts a time.

Run: python bench/bench_inline.py [--baseline SRC]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from common import median_time, remove, report, scratch

import udr

APPENDS, ROWS = 500, 1000
QUERIES = {
    "sum at head": 'SELECT count(*), sum(x) FROM events',
    "sum at main~250": 'SELECT count(*), sum(x) FROM "events@main~250"',
    "filter at head": "SELECT count(*) FROM events WHERE x % 97 = 3",
}


def build(path: Path) -> None:
    with udr.open(path) as db:
        for i in range(APPENDS):
            db.append("events", pa.table({"x": np.arange(i * ROWS, (i + 1) * ROWS, dtype=np.int64)}))


def measure(path: Path) -> dict[str, float]:
    """Median seconds of each query (fetched) and of opening and closing a connection."""
    out: dict[str, float] = {}
    with udr.open(path) as db:
        db.sql(QUERIES["sum at head"]).fetchall()  # warm: chunk hashes and the snapshot cache
        for name, query in QUERIES.items():
            out[name] = median_time(lambda q=query: db.sql(q).fetchall(), 21)  # type: ignore[misc]
        out["connect + close"] = median_time(lambda: db.connect().close(), 21)
    return out


def _child(lake: Path, src: str | None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": src} if src is not None else dict(os.environ)
    done = subprocess.run([sys.executable, __file__, "--measure", str(lake)], env=env, capture_output=True,
                          text=True, check=True)
    return dict(json.loads(done.stdout))


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(Path(sys.argv[2]))))
        return
    baseline_src = sys.argv[2] if sys.argv[1:2] == ["--baseline"] else None
    root = scratch("inline")
    try:
        build(root / "lake")
        # Alternated, each side twice, the better median kept: a shared machine's load shifts over a run.
        runs: dict[str | None, list[dict[str, float]]] = {None: [], baseline_src: []}
        for _ in range(2):
            for src in ([baseline_src] if baseline_src is not None else []) + [None]:
                runs[src].append(_child(root / "lake", src))
        for name in QUERIES.keys() | {"connect + close"}:
            ours = min(r[name] for r in runs[None])
            theirs = min(r[name] for r in runs[baseline_src]) if baseline_src is not None else None
            report("Q1", f"{name} ({APPENDS} appends)", ours * 1000, "ms",
                   baseline=theirs * 1000 if theirs is not None else None, baseline_name="before")
    finally:
        remove(root)


if __name__ == "__main__":
    main()
