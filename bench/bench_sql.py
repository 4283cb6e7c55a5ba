"""S1/S2/S3: writing with SQL, as ratios to DuckDB writing the same result with COPY ... TO parquet.

    python bench/bench_sql.py [rows]

S1: CREATE OR REPLACE TABLE master AS SELECT (a join of three tables) into a new table, then the nightly
    re-run on a keyed master after 2% of the inputs changed (rows stored are reported).
S2: UPDATE of 1% of a keyed table's rows, against rewriting the table with COPY.
S3: ALTER TABLE RENAME COLUMN / DROP COLUMN: milliseconds and chunks written.
Never asserts a time; prints one line per figure.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import duckdb

import udr

INPUTS = """
CREATE TABLE a AS SELECT i AS id, i % 1000 AS g, random() AS x FROM range({n}) r(i);
CREATE TABLE b AS SELECT i AS id, 'name ' || i AS name FROM range({n}) r(i);
CREATE TABLE c AS SELECT i AS id, i * 2 AS y FROM range({n}) r(i);
"""
JOIN = "SELECT a.id, a.g, a.x, b.name, c.y FROM a JOIN b USING (id) JOIN c USING (id)"
CHANGE = "UPDATE a SET x = x + 1 WHERE id % 50 = 0"


def timed(run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - start


def copy_time(con: duckdb.DuckDBPyConnection, query: str, out: Path) -> float:
    return timed(lambda: con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)"))


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain = duckdb.connect()
        plain.execute(INPUTS.format(n=n))
        with udr.open(root / "lake") as db:
            db.execute(INPUTS.format(n=n))
            copy = copy_time(plain, JOIN, root / "m.parquet")
            first = timed(lambda: db.execute(f"CREATE OR REPLACE TABLE master AS {JOIN}"))
            print(f"S1 first build   : {first:.2f}s vs COPY {copy:.2f}s = {first / copy:.2f}x")
            db.execute("ALTER TABLE master ADD PRIMARY KEY (id)")
            db.execute(CHANGE)
            plain.execute(CHANGE)
            copy = copy_time(plain, JOIN, root / "m2.parquet")
            chunks = db.stats().chunks
            nightly = timed(lambda: db.execute(f"CREATE OR REPLACE TABLE master AS {JOIN}"))
            change = db.commit_info("main").tables["master"]
            print(f"S1 nightly rerun : {nightly:.2f}s vs COPY {copy:.2f}s = {nightly / copy:.2f}x; "
                  f"{change.updated:,} rows updated, {db.stats().chunks - chunks} chunk(s) written")
            plain.execute(f"CREATE TABLE master AS {JOIN}")
            copy = copy_time(plain, "SELECT * FROM master", root / "m3.parquet")
            update = timed(lambda: db.execute("UPDATE master SET y = y + 1 WHERE id % 100 = 7"))
            print(f"S2 update 1%     : {update:.2f}s vs COPY of the table {copy:.2f}s = {update / copy:.2f}x")
            for sql in ("ALTER TABLE master DROP COLUMN name", "ALTER TABLE master RENAME COLUMN y TO z"):
                chunks = db.stats().chunks
                took = timed(lambda: db.execute(sql))
                print(f"S3 {sql.split()[3]:6} column : {took * 1000:.1f} ms, {db.stats().chunks - chunks} chunk(s) written")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
