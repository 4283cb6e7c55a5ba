"""Child process of the retention crash test: `python retention_worker.py LAKE FIRST_SEED`.

Loops forever: overwrite table `t` with the rows of one seed (printing `commit ID SEED` once the commit
returned: its acknowledgement), then `expire` (printing `expired`), then `gc` (printing `gc`). The parent
SIGKILLs it at random moments, so kills land inside commits, expiries and collections.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

import udr

ROWS = 60_000


def rows(seed: int) -> pa.Table:
    """The rows a commit of `seed` writes: random int64s, one Parquet chunk file."""
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.integers(0, 1 << 62, ROWS, dtype=np.int64)})


def main(lake: Path, seed: int) -> None:
    with udr.open(lake) as db:
        while True:
            commit = db.overwrite("t", rows(seed))
            print(f"commit {commit.id} {seed}", flush=True)
            seed += 1
            db.expire()
            print("expired", flush=True)
            db.gc()
            print("gc", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
