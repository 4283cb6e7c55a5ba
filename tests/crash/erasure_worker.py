"""Child process of the erasure crash test: `python erasure_worker.py LAKE FIRST`.

Loops forever from n = FIRST: append a Parquet batch whose row `n * BATCH` holds `marker(n)` (printing
`commit ID N` once the commit returned), erase the previous batch's marker row (printing `erased N-1`),
then `gc` (printing `gc`). The parent SIGKILLs it at random moments, inside commits, erasures and gc scrubs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

import udr

BATCH = 20_000
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def marker(n: int) -> str:
    """The unique value batch `n` stores in its first row (kept literally by snappy in the chunk file)."""
    return f"erase-marker-{n:06d}-Qx7"


def batch(n: int) -> pa.Table:
    """Batch `n`'s rows."""
    ids = list(range(n * BATCH, (n + 1) * BATCH))
    return pa.table({"id": ids, "name": [marker(n) if i == n * BATCH else f"row-{i}" for i in ids]}, schema=SCHEMA)


def main(lake: Path, first: int) -> None:
    with udr.open(lake) as db:
        n = first
        while True:
            commit = db.append("people", batch(n))
            print(f"commit {commit.id} {n}", flush=True)
            if n > first:
                db.erase("people", {"id": [(n - 1) * BATCH]}, reason=f"request {n - 1}")
                print(f"erased {n - 1}", flush=True)
            db.gc()
            print("gc", flush=True)
            n += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
