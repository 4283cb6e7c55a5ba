"""S1/S2/S3: writing with SQL, as ratios to DuckDB writing the same result with COPY ... TO parquet.

    python bench/bench_sql.py [rows]

S1: CREATE OR REPLACE TABLE ... AS SELECT (a join of three tables) into a new table, then the nightly
    re-run on a keyed master, built the night before by the same query, after 2% of the inputs changed
    (rows and chunks stored are reported; a key-local query recomputes only the changed keys).
S2: UPDATE of 1% of a keyed table's rows, against rewriting the table with COPY.
S3: ALTER TABLE DROP COLUMN (three) / RENAME COLUMN (five): median and worst milliseconds, chunks written.
COPY reads the same stored inputs as UDR (DuckDB's views over the lake's tables, `db.connect()`). Each
figure is the median of three runs, COPY and UDR alternating, so both see the same cache state; S1 and S2
also give the ratio of process CPU time (DuckDB's threads included), which moves less than wall time when
other work shares the machine. Never asserts a time; prints one line per figure.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import udr

INPUTS = """
CREATE TABLE a AS SELECT i AS id, i % 1000 AS g, random() AS x FROM range({n}) r(i);
CREATE TABLE b AS SELECT i AS id, 'name ' || i AS name FROM range({n}) r(i);
CREATE TABLE c AS SELECT i AS id, i * 2 AS y FROM range({n}) r(i);
"""
JOIN = "SELECT a.id, a.g, a.x, b.name, c.y FROM a JOIN b USING (id) JOIN c USING (id)"
RUNS = 3


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads (DuckDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], object]) -> float:
    return timed_cpu(run)[0]


def timed_cpu(run: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of `run()`."""
    start, cpu = time.perf_counter(), cpu_seconds()
    run()
    return time.perf_counter() - start, cpu_seconds() - cpu


def ratio(db: udr.Lake, out: Path, copy_query: str, steps: list[Callable[[], object]],
          prepare: Callable[[int], object] | None = None) -> tuple[float, float, float]:
    """Median wall seconds of COPY (copy_query) and of each UDR step, alternating (`prepare(n)` untimed
    first), and the ratio of their median CPU seconds."""
    copies, ours = [], []
    for n, step in enumerate(steps):
        if prepare is not None:
            prepare(n)
        with db.connect() as con:
            copies.append(timed_cpu(lambda n=n: con.execute(
                f"COPY ({copy_query}) TO '{out}.{n}.parquet' (FORMAT parquet)")))
        ours.append(timed_cpu(step))
    cpu = statistics.median(c for _, c in ours) / statistics.median(c for _, c in copies)
    return statistics.median(w for w, _ in copies), statistics.median(w for w, _ in ours), cpu


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with udr.open(root / "lake") as db:
            db.execute(INPUTS.format(n=n))
            copy, first, cpu = ratio(db, root / "s1", JOIN, [
                lambda i=i: db.execute(f"CREATE TABLE master{i} AS {JOIN}") for i in range(RUNS)])  # type: ignore[misc]
            print(f"S1 first build   : {first:.2f}s vs COPY {copy:.2f}s = {first / copy:.2f}x (CPU {cpu:.2f}x)")
            db.execute("ALTER TABLE master0 ADD PRIMARY KEY (id)")
            # Last night's build by the same query (untimed): a re-run recomputes only the keys changed since.
            db.execute(f"CREATE OR REPLACE TABLE master0 AS {JOIN}")
            chunks = db.stats().chunks

            copy, rerun, cpu = ratio(db, root / "s1n", JOIN,
                                     [lambda: db.execute(f"CREATE OR REPLACE TABLE master0 AS {JOIN}")] * RUNS,
                                     prepare=lambda i: db.execute(f"UPDATE a SET x = x + 1 WHERE id % 50 = {i}"))
            change = db.commit_info("main").tables["master0"]
            print(f"S1 nightly rerun : {rerun:.2f}s vs COPY {copy:.2f}s = {rerun / copy:.2f}x (CPU {cpu:.2f}x); "
                  f"last run {change.updated:,} rows updated, "
                  f"{(db.stats().chunks - chunks) / RUNS:.0f} chunk(s) per run, the UPDATE of a included")
            copy, update, cpu = ratio(db, root / "s2", "SELECT * FROM master0", [
                lambda i=i: db.execute(f"UPDATE master0 SET y = y + 1 WHERE id % 100 = {i}") for i in range(RUNS)])  # type: ignore[misc]
            print(f"S2 update 1%     : {update:.2f}s vs COPY of the table {copy:.2f}s = {update / copy:.2f}x "
                  f"(CPU {cpu:.2f}x)")
            # Several statements of each kind: one alone may take a full garbage collection of the process.
            renames = [("y", "z"), ("z", "y")] * 2 + [("y", "z")]
            for kind, statements in (("DROP", [f"DROP COLUMN {c}" for c in ("name", "g", "x")]),
                                     ("RENAME", [f"RENAME COLUMN {a} TO {b}" for a, b in renames])):
                chunks = db.stats().chunks
                took = [timed(lambda sql=sql: db.execute(f"ALTER TABLE master0 {sql}")) for sql in statements]
                print(f"S3 {kind:6} column : {statistics.median(took) * 1000:.1f} ms median of {len(took)} "
                      f"(max {max(took) * 1000:.1f} ms), {db.stats().chunks - chunks} chunk(s) written")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
