"""Run the UDR benchmarks, each bench module in its own process, then print one table of this run's results.

Usage: python bench/run.py [NAME ...]    NAME is a module without its prefix: ingest, commits, refresh, ...

Each module runs as `python bench_NAME.py` with bench/ as its working directory, its output shown as it
comes. A module that fails is reported and the others still run; the exit status is 1 if any failed.
Missing a target is not a failure: benchmarks print figures, they never assert times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / ".data" / "results.jsonl"
ORDER = ["ingest", "commits", "refresh", "branches", "stream"]


def modules() -> dict[str, Path]:
    """Every bench/bench_*.py by short name: the known ones in ORDER first, any others after."""
    found = {p.stem.removeprefix("bench_"): p for p in BENCH.glob("bench_*.py")}
    ordered = [name for name in ORDER if name in found] + sorted(set(found) - set(ORDER))
    return {name: found[name] for name in ordered}


def select(available: dict[str, Path], names: list[str]) -> dict[str, Path]:
    if not names:
        return available
    chosen = {}
    for name in names:
        short = Path(name).stem.removeprefix("bench_")
        if short not in available:
            raise SystemExit(f"no benchmark {name!r}; choose from: {', '.join(available)}")
        chosen[short] = available[short]
    return chosen


def results_since(start: str) -> list[dict]:
    """Result lines written at or after `start` (same "%Y-%m-%d %H:%M:%S" format, so strings compare)."""
    if not RESULTS.exists():
        return []
    rows = []
    with open(RESULTS) as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if row.get("time", "") >= start:
                    rows.append(row)
    return rows


def summary(rows: list[dict]) -> str:
    header = ("bench", "metric", "value", "baseline", "ratio", "target", "")
    table = [header]
    for r in rows:
        unit = r.get("unit", "")
        baseline = r.get("baseline")
        ratio = r.get("ratio")
        verdict = {True: "MET", False: "MISSED"}.get(r.get("ok"), "")
        table.append((
            r.get("bench", ""), r.get("metric", ""), f"{r['value']:.4g} {unit}",
            f"{baseline:.4g} {unit} ({r.get('baseline_name', '')})" if baseline is not None else "",
            f"{ratio:.3f}x" if ratio is not None else "", r.get("target", ""), verdict,
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    chosen = select(modules(), argv)
    start = time.strftime("%Y-%m-%d %H:%M:%S")
    failed = []
    for name, path in chosen.items():
        print(f"== {name} ({path.name})", flush=True)
        began = time.perf_counter()
        code = subprocess.run([sys.executable, str(path)], cwd=BENCH, check=False).returncode
        print(f"== {name}: {'done' if code == 0 else f'FAILED (exit {code})'} in "
              f"{time.perf_counter() - began:.0f} s\n", flush=True)
        if code != 0:
            failed.append(name)
    rows = results_since(start)
    print(f"== summary: {len(rows)} results since {start} (recorded in {RESULTS})")
    if rows:
        print(summary(rows))
    met = sum(1 for r in rows if r.get("ok") is True)
    missed = sum(1 for r in rows if r.get("ok") is False)
    print(f"\ntargets met: {met}, missed: {missed}" + (f"; failed benchmarks: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
