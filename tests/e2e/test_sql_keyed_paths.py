"""Keyed SQL writes found inside DuckDB (`udr.query.sqldiff`): a keyed `CREATE OR REPLACE TABLE ... AS` and a
keyed `UPDATE` store exactly what the API's `overwrite` and `upsert` of the same rows store (rows, counts,
before-images, change feed), over tables with deleted rows, inline rows and older schemas."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import udr
from udr.log.format import BlobKind, CommitId
from udr.materialize.encodings import decode_before

SETUP = ("CREATE TABLE k (id INTEGER PRIMARY KEY, g INTEGER, v VARCHAR, f DOUBLE);"
         "INSERT INTO k SELECT i, i % 4, 'v' || i, i / 2 FROM range(0, 40) r(i);"
         "CREATE TABLE src (id INTEGER, g INTEGER)")
# Queries giving k's columns: overlapping, partly changed and partly new keys; NULLs and NaN among values.
QUERIES = [
    "SELECT id, g, v, f FROM k WHERE id % 3 <> 0",
    "SELECT id, g + (id % 5 = 0)::INTEGER AS g, v, f FROM k",
    ("SELECT i::INTEGER AS id, (i % 4)::INTEGER AS g, CASE WHEN i % 7 = 0 THEN NULL ELSE 'v' || i END AS v, "
     "CASE WHEN i % 11 = 0 THEN 'nan'::DOUBLE ELSE i / 2 END AS f FROM range(10, 60) r(i)"),
    "SELECT id, g, upper(v) AS v, f FROM k WHERE id < 1000 UNION ALL SELECT 1000 + id, g, v, f FROM k WHERE id < 3",
]
UPDATES = [
    "UPDATE k SET g = g + 1 WHERE id % 4 = 1",
    "UPDATE k SET v = NULL WHERE g = 2",
    "UPDATE k SET g = g WHERE id < 20",  # sets values to themselves: no change
    "UPDATE k AS t SET g = src.g FROM src WHERE t.id = src.id",
    "UPDATE k SET f = 'nan'::DOUBLE WHERE id % 6 = 0",
]
RESHAPES = ["DELETE FROM k WHERE id % 9 = 0", "INSERT OR REPLACE INTO k VALUES (500, 1, 'x', 0.5)",
            "INSERT INTO src SELECT i, 100 + i FROM range(0, 30, 2) r(i)"]


def _state(db: udr.Lake) -> str:
    """k's rows, the last commit's change of k and its before-image (rows sorted by key), as text (where NaN
    equals NaN)."""
    rows = db.query("SELECT * FROM k ORDER BY id").to_pylist()
    commit = db.commit_info("main")
    op = db._handle.ctx.log.get_commit(CommitId(commit.id)).tables.get("k")
    before = None
    if op is not None and op.before is not None:
        before = decode_before(db._handle.ctx.log.get_blob(op.before, BlobKind.BEFORE)).sort_by("id").to_pylist()
    return repr((rows, commit.tables.get("k"), before))


def _feed(db: udr.Lake) -> list[str]:
    """k's change feed, each commit's rows in a fixed order (the order within a commit is the storage order)."""
    feed = db.changes("k").drop_columns(["_commit_id", "_commit_time"]).to_pylist()
    return sorted(repr(row) for row in feed)


def _api_twin(db: udr.Lake, sql: str) -> None:
    """What `sql` does, through the API: the new rows computed by DuckDB, then `overwrite` or `upsert`."""
    with db.connect() as con:
        if sql.startswith("CREATE"):
            db.overwrite("k", con.sql(sql.split(" AS ", 1)[1]).to_arrow_table())
            return
        plain = duckdb.connect()
        for table in ("k", "src"):
            plain.register(f"{table}_rows", con.sql(f"SELECT * FROM {table}").to_arrow_table())
            plain.execute(f"CREATE TABLE {table} AS SELECT * FROM {table}_rows")
        plain.execute(sql)
        db.upsert("k", plain.sql("SELECT * FROM k").to_arrow_table())


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(st.sampled_from([*(f"CREATE OR REPLACE TABLE k AS {q}" for q in QUERIES), *UPDATES,
                                        *RESHAPES]), min_size=1, max_size=6))
# Four keyed overwrites: the API's fourth is followed by a merge of the table's delta fragments, and SQL's must be.
@example(script=[f"CREATE OR REPLACE TABLE k AS {q}" for q in (QUERIES[3], QUERIES[3], QUERIES[0], QUERIES[3])])
def test_sql_keyed_writes_store_what_the_api_stores(tmp_path_factory: pytest.TempPathFactory,
                                                     script: list[str]) -> None:
    root = tmp_path_factory.mktemp("lakes")
    with udr.open(root / "sql") as ours, udr.open(root / "api") as theirs:
        ours.execute(SETUP)
        theirs.execute(SETUP)
        for sql in script:
            ours.execute(sql)
            if sql in RESHAPES:
                theirs.execute(sql)
            else:
                _api_twin(theirs, sql)
            assert _state(ours) == _state(theirs), sql
        assert _feed(ours) == _feed(theirs)
        assert ours.verify().ok


def test_a_keyed_overwrite_works_over_deleted_inline_and_renamed_columns(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE k (id BIGINT PRIMARY KEY, a BIGINT, b VARCHAR)")
        db.execute("INSERT INTO k SELECT i, i, 'b' || i FROM range(50000) r(i)")  # a chunk file
        db.execute("DELETE FROM k WHERE id % 10 = 0")  # a deletion vector on it
        db.execute("ALTER TABLE k RENAME COLUMN a TO aa; ALTER TABLE k ADD COLUMN c INTEGER")
        db.execute("INSERT INTO k VALUES (100000, 1, 'x', 7)")  # an inline fragment of the new schema
        expected = db.query("SELECT id, CASE WHEN id % 7 = 0 THEN aa + 1 ELSE aa END AS aa, b, c FROM k "
                            "WHERE id % 13 <> 0 UNION ALL SELECT 200000, 2, 'y', 8")
        commit = db.execute("CREATE OR REPLACE TABLE k AS SELECT id, CASE WHEN id % 7 = 0 THEN aa + 1 ELSE aa END "
                            "AS aa, b, c FROM k WHERE id % 13 <> 0 UNION ALL SELECT 200000, 2, 'y', 8")
        assert db.query("SELECT * FROM k ORDER BY id").equals(expected.sort_by("id"))
        change = commit.tables["k"]
        live = 50000 - 5000 + 1
        gone = len([i for i in range(50000) if i % 10 and not i % 13]) + (100000 % 13 == 0)
        updated = len([i for i in range(50000) if i % 10 and i % 13 and not i % 7])
        assert (change.inserted, change.updated, change.deleted) == (1, updated, gone)
        assert db.row_count("k") == live - gone + 1
        assert db.verify().ok


@pytest.mark.parametrize("query, message", [
    ("SELECT id, g, v, f FROM k UNION ALL SELECT id, g, v, f FROM k WHERE id = 3", "duplicate"),  # identical copies
    ("SELECT id, g, v, f FROM k UNION ALL SELECT 99, 1, 'a', 1 UNION ALL SELECT 99, 2, 'b', 2", "duplicate"),
    ("SELECT id, g, v, f FROM k UNION ALL SELECT NULL, 1, 'a', 1", "null"),
])
def test_a_keyed_overwrite_with_a_bad_key_writes_nothing(tmp_path: Path, query: str, message: str) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute(SETUP)
        head = db.commit_info("main").id
        with pytest.raises(udr.KeyViolation, match=message):
            db.execute(f"CREATE OR REPLACE TABLE k AS {query}")
        assert db.commit_info("main").id == head


def test_an_update_whose_where_fails_only_on_a_deleted_row_runs_as_duckdb_runs_it(tmp_path: Path) -> None:
    # The deleted old version of row 5 holds 'abc' in a chunk file; the live rows all hold numbers.
    setup = ("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, n INTEGER);"
             "INSERT INTO t SELECT i, CASE WHEN i = 5 THEN 'abc' ELSE i::VARCHAR END, 0 FROM range(20000) r(i)")
    plain = duckdb.connect()
    plain.execute(setup)
    with udr.open(tmp_path / "lake") as db:
        db.execute(setup)
        for sql in ["UPDATE t SET v = '5' WHERE id = 5", "UPDATE t SET n = n + 1 WHERE v::INTEGER % 2 = 1"]:
            plain.execute(sql)
            db.execute(sql)
        assert db.commit_info("main").tables["t"] == udr.TableChange(0, 10000, 0)
        assert db.query("SELECT * FROM t ORDER BY id").to_pylist() == [
            dict(zip(("id", "v", "n"), row)) for row in plain.execute("SELECT * FROM t ORDER BY id").fetchall()]
        with pytest.raises(udr.SqlError, match="abc"):
            db.execute("UPDATE t SET n = 0 WHERE v::INTEGER = 1 OR id = 5 AND 'abc'::INTEGER = 0")


@pytest.mark.parametrize("sql", [
    "UPDATE t SET n = n + 1 WHERE id IN (SELECT id + 1 FROM t WHERE n % 3 = 0)",  # reads t again: its own view
    "UPDATE t AS x SET n = (SELECT max(n) FROM t) WHERE x.id % 7 = 2",
    "UPDATE t SET n = n * 2 WHERE id % 7 = 3",  # reads t only as its target: no view of t is built
])
def test_an_update_reading_its_own_table_elsewhere_sees_it_as_duckdb_does(tmp_path: Path, sql: str) -> None:
    setup = "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO t SELECT i, i FROM range(30000) r(i)"
    plain = duckdb.connect()
    with udr.open(tmp_path / "lake") as db:
        for step in [setup, "DELETE FROM t WHERE id % 5 = 0", sql]:
            plain.execute(step)
            db.execute(step)
        assert db.query("SELECT * FROM t ORDER BY id").to_pylist() == [
            {"id": i, "n": n} for i, n in plain.execute("SELECT * FROM t ORDER BY id").fetchall()]



@pytest.mark.parametrize("sql", [
    "UPDATE t AS x SET n = x.n + 1 WHERE x.id % 7 = 3 OR x.m = 'm5'",  # qualified by the alias, in the scan
    "UPDATE t SET n = -n WHERE id IN (SELECT id FROM s)",  # a subquery over another table, in the scan
    "WITH w AS (SELECT id FROM s) UPDATE t SET n = 0 WHERE id IN (SELECT id FROM w)",  # reads the WITH: above it
])
def test_an_update_filtered_in_the_scan_keeps_the_rows_duckdb_keeps(tmp_path: Path, sql: str) -> None:
    setup = ("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, m VARCHAR);"
             "INSERT INTO t SELECT i, i, 'm' || i FROM range(30000) r(i);"
             "CREATE TABLE s AS SELECT i * 3 AS id FROM range(20000) r(i);"
             "DELETE FROM t WHERE id % 5 = 0")
    plain = duckdb.connect()
    with udr.open(tmp_path / "lake") as db:
        # A chunk file with deleted rows, one of an older schema (the rename), and inline rows: each part
        # of the positioned view gets the WHERE.
        steps = [setup, "ALTER TABLE t RENAME COLUMN m TO mm", "ALTER TABLE t RENAME COLUMN mm TO m",
                 "INSERT INTO t VALUES (40003, 1, 'm5'), (40004, 2, 'x')", sql]
        for step in steps:
            plain.execute(step)
            db.execute(step)
        assert db.query("SELECT * FROM t ORDER BY id").to_pylist() == [
            {"id": i, "n": n, "m": m} for i, n, m in plain.execute("SELECT * FROM t ORDER BY id").fetchall()]
        assert db.verify().ok


@pytest.mark.parametrize("sql, message", [
    ("UPDATE t SET n = 1 WHERE nope = 3", "nope"),
    ("UPDATE t AS x SET n = 1 WHERE t.id = 1", "Referenced table"),
])
def test_an_update_with_a_bad_where_is_an_sql_error_and_writes_nothing(tmp_path: Path, sql: str,
                                                                         message: str) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER); "
                   "INSERT INTO t SELECT i, i FROM range(30000) r(i)")
        head = db.commit_info("main").id
        with pytest.raises(udr.SqlError, match=message):
            db.execute(sql)
        assert db.commit_info("main").id == head
