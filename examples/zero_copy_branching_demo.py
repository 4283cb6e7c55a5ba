"""Zero-copy branches: test a risky change on a full copy of production that costs nothing, then merge it.

    python examples/zero_copy_branching_demo.py [LAKE]

1. loads a 2M-row `prices` table on main;
2. creates branch `repricing` (a new ref to the same commit: no chunk is written, whatever the table's size);
3. runs a repricing on the branch with SQL while main keeps taking its normal updates;
4. diffs the branch against main and checks it (write-audit-publish: nothing reaches main unchecked);
5. merges it back three-way, per row and per column: main's own updates and the branch's repricing both
   survive, and one row changed on both sides is reported as a conflict, then resolved.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import udr

ROWS = 2_000_000


def disk_bytes(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(path: Path) -> None:
    rng = np.random.default_rng(3)
    with udr.open(path) as db:
        db.create_table("prices", pa.schema([("sku", pa.int64()), ("price", pa.int64()), ("stock", pa.int64())]),
                        primary_key=["sku"])
        db.append("prices", {"sku": np.arange(ROWS), "price": rng.integers(100, 10_000, ROWS),
                             "stock": rng.integers(0, 500, ROWS)}, message="load the catalogue")
        loaded_107 = price(db, 107)
        before, data_before = disk_bytes(path), disk_bytes(path / "chunks")
        start = time.perf_counter()
        db.create_branch("repricing")
        took = (time.perf_counter() - start) * 1000
        print(f"1. main holds {db.row_count('prices'):,} prices ({before / 1e6:.1f} MB on disk)")
        print(f"2. branch 'repricing' created in {took:.1f} ms; data bytes written: "
              f"{disk_bytes(path / 'chunks') - data_before:,} (a branch is a name for a commit: the log gains "
              "one ref and its ref-log entry)")

        repriced = db.execute("UPDATE prices SET price = price * 11 / 10 WHERE sku % 100 = 7",
                              branch="repricing", message="+10% on line 7", author="pricing-team")
        db.upsert("prices", {"sku": [7, 1_234_500], "price": [555, 999], "stock": [1, 2]},
                  message="main: two manual fixes", author="ops")
        print(f"3. on the branch: {repricing_counts(repriced)}; on main meanwhile: two manual fixes")

        summary = db.diff_summary("main", "repricing")
        changed = summary["prices"]
        print(f"4. diff main..repricing: prices {changed.updated:,} rows updated; "
              f"main still untouched by the repricing: "
              f"{price(db, 107) == loaded_107}")

        try:
            db.merge("repricing")
        except udr.MergeConflict as exc:
            print(f"5. merge refused: {len(exc.conflicts)} conflict (sku 7: main set 555, the branch repriced it)")
            merged = db.merge("repricing", strategy="ours", message="merge repricing; keep main's manual fix")
            print(f"   merged with strategy='ours' for that cell: {merged.short_id}; "
                  f"sku 7 = {price(db, 7)}, sku 1,234,500 = {price(db, 1_234_500)}, "
                  f"sku 107 = {price(db, 107)} (repriced)")
        assert price(db, 7) == 555 and price(db, 1_234_500) == 999
    print("OK")
    print("""
Try this with Delta Lake: Delta has no branches. A test copy of a table is a SHALLOW CLONE (Delta on
Spark; delta-rs 1.6.6 has none) or a full copy of its files, and there is no merge back: you re-run the
change on production or MERGE INTO from the copy by hand, with no three-way conflict detection. lakeFS
branches Delta tables but needs a server; UDR branches are a ref in the same directory, and merges are
per row and per column.""")


def repricing_counts(commit: udr.Commit) -> str:
    change = commit.tables["prices"]
    return f"{change.updated:,} prices updated in commit {commit.short_id}"


def price(db: udr.Lake, sku: int) -> int:
    """The price of `sku` on main."""
    return int(db.query(f"SELECT price FROM prices WHERE sku = {sku}").column("price")[0].as_py())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "lake")
