"""Make the golden lake of the current format: `python tests/golden/make_golden.py` (run once per format).

It writes tests/golden/v<FORMAT>/lake with the public API only: a keyed table with a Parquet chunk and a
deletion vector, an unkeyed table of small inline writes, a renamed column, a branch merged back, a tag, and
(from version 3) an erasure of one key followed by gc, (from version 4) an
inline write stored as Parquet and two deletes whose vectors chain, (from version 5) every vector stored as the
gaps between its positions.
tests/golden/test_golden.py opens a copy of every golden lake and checks the rows it holds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyarrow as pa

import udr

ROWS = 20_000  # over the inline limit once encoded, so the first write is a Parquet chunk


def make(path: Path) -> None:
    """Write the golden history into a new lake at `path`."""
    with udr.open(path) as db:
        with db.transaction(message="load", author="golden") as tx:
            tx.create_table("accounts", pa.schema([("id", pa.int64()), ("balance", pa.int64()), ("name", pa.string())]),
                            primary_key=["id"])
            tx.append("accounts", {"id": list(range(ROWS)), "balance": [i * 10 for i in range(ROWS)],
                                   "name": [f"n{i}" for i in range(ROWS)]})
            tx.append("events", {"kind": ["open"], "n": [1]})
        db.upsert("accounts", {"id": [1, ROWS], "balance": [-1, 7], "name": ["one", "new"]}, author="golden")
        db.delete("accounts", keys={"id": [2, 3]}, author="golden")  # a deletion vector on the Parquet chunk
        db.tag("v1")
        db.create_branch("fix")
        db.upsert("accounts", {"id": [10], "balance": [1], "name": ["fixed"]}, branch="fix", author="golden")
        db.append("events", {"kind": ["open"], "n": [3]}, author="golden")
        db.merge("fix", author="golden")
        db.execute("ALTER TABLE accounts RENAME COLUMN name TO label", author="golden")
        # Version 3: an erasure replaced the Parquet chunk (and a before-image) in every version; gc freed the old.
        db.erase("accounts", {"id": [5]}, reason="golden erasure", author="golden")
        db.gc()
        # Version 4: inline rows stored as Parquet, and a deletion vector chained onto the erasure's vector.
        db.append("events", {"kind": ["bulk"] * 3_000, "n": list(range(3_000))}, author="golden")
        db.delete("accounts", keys={"id": [6, 7]}, author="golden")
        db.delete("accounts", keys={"id": [8]}, author="golden")


if __name__ == "__main__":
    from udr.log.format import FORMAT_VERSION

    target = Path(__file__).resolve().parent / f"v{FORMAT_VERSION}" / "lake"
    if target.exists():
        sys.exit(f"{target} exists: a golden lake is never rewritten; remove it by hand only before its release")
    make(target)
    shutil.rmtree(target / "cache", ignore_errors=True)  # derived state, rebuilt on open
    for runtime in ("lock.mdb", "synced", "turn.lock"):  # LMDB reader table, fsync hint, writer turns
        (target / "log" / runtime).unlink(missing_ok=True)
    shutil.rmtree(target / "tmp", ignore_errors=True)
    print(f"wrote {target}")
