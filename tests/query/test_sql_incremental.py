"""Incremental rebuilds of a keyed table by `CREATE OR REPLACE TABLE t AS <key-local query>`
(`udr.query.incremental`, `udr.api.sqlbuilds`): the same rows, counts and change feed as the full
comparison, and the full comparison whenever the query or the record is in doubt."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import udr
from udr.api.sqlbuilds import Builds, state_digest
from udr.log.format import CACHE_DIR, SQL_BUILDS_DIR
from udr.query.incremental import KEY_COLUMN, key_local

SETUP = """
CREATE TABLE a (id INTEGER PRIMARY KEY, x INTEGER, s VARCHAR);
CREATE TABLE b (id INTEGER PRIMARY KEY, y INTEGER);
CREATE TABLE c (id INTEGER PRIMARY KEY, z VARCHAR);
INSERT INTO a SELECT i, CASE WHEN i % 9 = 0 THEN NULL ELSE i % 17 END, 's' || i FROM range(0, 300) r(i);
INSERT INTO b SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE i END FROM range(0, 300, 2) r(i);
INSERT INTO c SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'z' || i END FROM range(0, 300, 3) r(i);
CREATE TABLE u (id INTEGER, y INTEGER);
INSERT INTO u SELECT i, i % 13 FROM range(0, 300, 4) r(i);
"""
LOCAL = [
    "SELECT a.id, a.x, b.y, c.z FROM a LEFT JOIN b USING (id) LEFT JOIN c USING (id)",
    ("SELECT id, coalesce(a.x, 0) + coalesce(b.y, 0) AS x, b.y, upper(c.z) || s AS z "
     "FROM a LEFT JOIN b USING (id) JOIN c USING (id) WHERE a.x IS NULL OR a.x > 3"),
    "SELECT a.id, a.x, b.y, c.z FROM a JOIN b ON a.id = b.id LEFT JOIN c ON b.id = c.id ORDER BY a.id",
    # u has no key: a repeated id gives a repeated key (a KeyViolation), a null id matches nothing.
    "SELECT a.id, a.x, u.y, c.z FROM a LEFT JOIN u USING (id) LEFT JOIN c USING (id)",
]
NOT_LOCAL = [
    ("SELECT a.id, a.x, b.y, c.z FROM a LEFT JOIN b USING (id) LEFT JOIN c USING (id) "
     "WHERE a.x >= (SELECT avg(x) FROM a) - 5"),
    ("SELECT a.id, CAST(row_number() OVER (ORDER BY a.id) AS INTEGER) AS x, b.y, c.z "
     "FROM a LEFT JOIN b USING (id) LEFT JOIN c USING (id)"),
    "SELECT id, a.x, b.y, CAST(NULL AS VARCHAR) AS z FROM a FULL JOIN b USING (id)",
]

n = st.integers(0, 320)
change = st.one_of(
    st.builds(lambda k, m: f"UPDATE a SET x = coalesce(x, 0) + 1 WHERE id % 97 = {k % 97} AND id < {m}", n, n),
    st.builds(lambda k: f"UPDATE b SET y = NULL WHERE id = {k}", n),
    st.builds(lambda k: f"UPDATE a SET x = x WHERE id < {k}", n),  # changes no row
    # Changes a column only LOCAL[1] reads: the other queries need not recompute those keys.
    st.builds(lambda k: f"UPDATE a SET s = s || 'x' WHERE id % 7 = {k % 7}", n),
    st.builds(lambda k: f"DELETE FROM a WHERE id = {k}", n),
    st.builds(lambda k: f"DELETE FROM c WHERE id % 89 = {k % 89}", n),
    st.builds(lambda k, v: f"INSERT OR REPLACE INTO a VALUES ({k}, {v}, 'new')", n,
              st.sampled_from(["NULL", "4", "9"])),
    st.builds(lambda k: f"INSERT OR REPLACE INTO b VALUES ({k}, {k % 7})", n),
    st.builds(lambda k: f"INSERT OR REPLACE INTO c VALUES ({k}, NULL)", n),
    st.builds(lambda k: f"INSERT INTO u VALUES ({k}, {k % 5})", n),  # may repeat an id
    st.builds(lambda k: f"INSERT INTO u VALUES (NULL, {k})", n),
    st.builds(lambda k: f"DELETE FROM u WHERE id = {k} OR id IS NULL", n),
    st.builds(lambda k: f"UPDATE u SET y = y + 1 WHERE id % 13 = {k % 13}", n),
)
step = st.tuples(st.lists(change, max_size=4), st.sampled_from(LOCAL + LOCAL + LOCAL + NOT_LOCAL),
                 st.booleans())


def attempt(db: udr.Lake, sql: str) -> object:
    """What running `sql` did to m: its row counts, or the kind of error it raised."""
    try:
        return db.execute(sql).tables.get("m")
    except udr.UdrError as exc:
        return type(exc)


def feed(db: udr.Lake) -> list[dict[str, object]]:
    rows = db.changes("m").drop_columns(["_commit_id", "_commit_time"]).to_pylist()
    return sorted(rows, key=repr)


def rows(db: udr.Lake) -> list[dict[str, object]]:
    return sorted(db.read("m").to_pylist(), key=lambda r: r["id"])


def recorded(db: udr.Lake, query: str) -> bool:
    """Whether m's build record covers m as it is now, for `query` (so the rebuild is incremental)."""
    ctx = db._handle.ctx
    path = next(iter((db.path / CACHE_DIR / SQL_BUILDS_DIR).glob("*.json")), None)
    state = ctx.materializer.snapshot(db._handle.head("main"))["m"]
    return path is not None and state_digest(state) in path.read_text() and sqlglot_digest(query) in path.read_text()


def sqlglot_digest(query: str) -> str:
    plan = key_local(sqlglot.parse_one(query, dialect="duckdb"), ["id"],
                     {"a": ["id"], "b": ["id"], "c": ["id"], "u": None}, pa.int32())
    return plan.digest if plan is not None else "not key-local"


@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=2, max_size=6))
def test_incremental_rebuilds_match_full_rebuilds(steps: list[tuple[list[str], str, bool]]) -> None:
    check_against_full_rebuilds(steps)


@pytest.mark.slow
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=2, max_size=8))
def test_many_incremental_rebuilds_match_full_rebuilds(steps: list[tuple[list[str], str, bool]]) -> None:
    check_against_full_rebuilds(steps)


def check_against_full_rebuilds(steps: list[tuple[list[str], str, bool]]) -> None:
    """Run `steps` (input changes, a rebuild query, whether both run in one transaction) on two lakes, one
    of them without build records (every rebuild compares every row): the same rows, counts, errors and
    change feed; and every rebuild that could be incremental found its record."""
    with tempfile.TemporaryDirectory() as tmp, udr.open(Path(tmp) / "inc") as inc, \
            udr.open(Path(tmp) / "full") as full:
        for db in (inc, full):
            db.execute(SETUP)
            db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
        hits = expected = 0
        last = None  # the query whose build record covers m as it is
        for changes, query, together in steps:
            rebuild = f"CREATE OR REPLACE TABLE m AS {query}"
            # `together`: the inputs change in the same transaction, which the rebuild must see.
            script = "; ".join([*changes, rebuild]) if together else None
            for db in (inc, full):
                if not together and changes:
                    db.execute("; ".join(changes))
            hits += recorded(inc, query) and not together
            expected += last == query and not together
            shutil.rmtree(full.path / CACHE_DIR / SQL_BUILDS_DIR, ignore_errors=True)
            done = [attempt(db, script or rebuild) for db in (inc, full)]
            assert done[0] == done[1]
            if not isinstance(done[0], type):  # a rebuild that raised left m (and its record) as it was
                assert rows(inc) == sorted(inc.query(query).to_pylist(), key=lambda r: r["id"])
                last = query if query in LOCAL and not (together and changes) else None
            assert rows(inc) == rows(full)
        assert feed(inc) == feed(full)
        assert hits >= expected


def test_a_rebuild_recomputes_only_changed_keys_and_records_the_build(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    assert recorded(db, LOCAL[0])
    db.execute("UPDATE a SET x = 100 WHERE id IN (1, 2); DELETE FROM b WHERE id = 4; INSERT INTO c VALUES (301, 'q')")
    commit = db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    assert commit.tables["m"] == udr.TableChange(inserted=0, updated=3, deleted=0)
    assert recorded(db, LOCAL[0])
    assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])
    before = db.changes("m", since=db.commit_info("main~1").id).to_pylist()
    assert {(r["id"], r["_change"]) for r in before} == {
        (1, "update_before"), (1, "update_after"), (2, "update_before"), (2, "update_after"),
        (4, "update_before"), (4, "update_after")}


def test_a_build_on_another_branch_is_reused_after_a_fast_forward(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    for night in range(3):
        db.create_branch("staging")
        db.execute(f"UPDATE a SET x = {night} WHERE id % 50 = {night}; DELETE FROM b WHERE id = {2 * night}",
                   "staging")
        incremental = night > 0
        assert recorded(db, LOCAL[0]) == incremental
        db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}", "staging")
        db.merge("staging")
        db.delete_branch("staging")
        assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])
        assert recorded(db, LOCAL[0])


def test_many_changed_keys_take_the_full_comparison(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    db.execute("UPDATE a SET x = -1 WHERE id % 2 = 0")  # half the keys: more than the 20% share
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])


def test_a_damaged_record_means_the_full_comparison(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    for path in (db.path / CACHE_DIR / SQL_BUILDS_DIR).glob("*.json"):
        path.write_text('{"table": "m", "query": ')
    db.execute("UPDATE a SET x = 7 WHERE id < 5")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])
    assert recorded(db, LOCAL[0])


CRASHING = """
import os, sys, udr
db = udr.open(sys.argv[1])
db.execute("UPDATE a SET x = 55 WHERE id < 10")
with db.transaction() as tx:
    tx.execute("CREATE OR REPLACE TABLE m AS {query}")
    os._exit(0)  # dies with the rebuild staged, never committed
"""


def test_a_build_that_never_committed_is_not_trusted_after_reopening(lake_path: Path) -> None:
    with udr.open(lake_path) as db:
        db.execute(SETUP)
        db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
        db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    subprocess.run([sys.executable, "-c", CRASHING.format(query=LOCAL[0]), str(lake_path)], check=True)
    with udr.open(lake_path) as db:
        assert not recorded(db, LOCAL[0])  # the record names the state the dead transaction staged
        db.execute("UPDATE b SET y = 1 WHERE id < 20")
        db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
        assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])
    with udr.open(lake_path) as db:  # reopened: the record of the last build is used, and right
        assert recorded(db, LOCAL[0])
        db.execute("UPDATE c SET z = 'again' WHERE id < 30")
        db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
        assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])


KEYS = {"a": ["id"], "b": ["id"], "c": ["id"], "d": ["id", "x"], "e": None, "u": None}


@pytest.mark.parametrize("query", [*LOCAL,
    "SELECT * FROM a LEFT JOIN b USING (id)",
    "SELECT a.*, b.y FROM a AS a LEFT JOIN b ON b.id = a.id",
    "SELECT id, hash(s) AS h FROM a",
    "SELECT e.id FROM e",  # an input without a key
])
def test_key_local_queries(query: str) -> None:
    assert key_local(sqlglot.parse_one(query, dialect="duckdb"), ["id"], KEYS, pa.int32()) is not None


@pytest.mark.parametrize("query", [*NOT_LOCAL,
    "SELECT a.id, a.x FROM a UNION ALL SELECT b.id, b.y FROM b",  # set operation
    "WITH w AS (SELECT * FROM a) SELECT w.id FROM w",  # CTE
    "SELECT a.id, max(a.x) AS x FROM a GROUP BY a.id",  # GROUP BY, aggregate
    "SELECT DISTINCT a.id, a.x FROM a",
    "SELECT a.id, a.x FROM a LIMIT 10",
    "SELECT a.id, a.x FROM a QUALIFY a.x > 1",
    "SELECT a.id, a.x FROM a USING SAMPLE 10%",
    "SELECT a.id, a.x FROM a WHERE a.id IN (SELECT id FROM b)",  # subquery
    "SELECT a.id, b.y FROM a RIGHT JOIN b USING (id)",
    "SELECT a.id, b.y FROM a, b WHERE a.id = b.id",  # comma join
    "SELECT a.id, b.y FROM a CROSS JOIN b",
    "SELECT a.id, b.y FROM a LEFT JOIN b ON a.id = b.y",  # not the key on both sides
    "SELECT a.id, b.y FROM a LEFT JOIN b ON a.id = b.id AND b.y > 1",
    "SELECT a.id, b.y FROM a LEFT JOIN b USING (id, y)",
    "SELECT b.id, a.x FROM a LEFT JOIN b USING (id)",  # key from a LEFT-joined table
    "SELECT a.x AS id FROM a",  # key not passed through
    "SELECT a.id + 0 AS id FROM a",
    "SELECT a.id, random() AS r FROM a",
    "SELECT a.id, uuid() AS u FROM a",
    "SELECT a.id, now() AS t FROM a",
    "SELECT a.id, current_date AS t FROM a",
    "SELECT a.id, nextval('s') AS t FROM a",
    "SELECT a.id, setseed(0.5) AS t FROM a",
    "SELECT a.id, some_udf(a.x) AS t FROM a",  # unknown function
    'SELECT id, x FROM "a@main~1"',  # another version
    "SELECT id, x FROM read_parquet('f.parquet')",
    "SELECT d.id FROM d",  # keyed on other columns
    "SELECT a.id FROM main.a",  # qualified name
    "SELECT a.id FROM a JOIN a AS a2 USING (id) JOIN a AS a2 USING (id)",  # alias twice
    "SELECT t.id FROM a AS t(id, x, s)",  # renamed columns
    "SELECT a.id FROM a LEFT JOIN b USING (id) LEFT JOIN zzz USING (id)",  # not a lake table
])
def test_constructs_that_are_not_key_local(query: str) -> None:
    assert key_local(sqlglot.parse_one(query, dialect="duckdb"), ["id"], KEYS, pa.int32()) is None


def test_key_types_and_composite_keys_are_not_key_local() -> None:
    tree = sqlglot.parse_one("SELECT a.id FROM a", dialect="duckdb")
    assert key_local(tree, ["id"], KEYS, pa.float64()) is None  # NaN keys: IN and the join disagree
    assert key_local(tree, ["id", "x"], KEYS, pa.int32()) is None


def test_changed_keys_are_those_of_the_inputs_rows_changed_since_the_build(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[3]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[3]}")
    plan = key_local(sqlglot.parse_one(LOCAL[3], dialect="duckdb"), ["id"], {"a": ["id"], "c": ["id"], "u": None},
                     pa.int32())
    assert plan is not None
    db.execute("UPDATE a SET x = -5 WHERE id IN (3, 7); DELETE FROM c WHERE id = 9; INSERT INTO u VALUES (1, 1)")
    db.execute("UPDATE u SET y = y WHERE id = 8")  # rewrites no row
    with db.transaction() as tx:
        builds = Builds(db._handle.ctx, tx._staging)
        changed = builds.changed_keys("m", plan)
        assert changed is not None and sorted(changed.column(KEY_COLUMN).to_pylist()) == [1, 3, 7, 9]
        tx.execute("INSERT INTO u VALUES (NULL, 2)")  # an input changed in this transaction: build it all
        assert builds.changed_keys("m", plan) is None
        tx.abort()
    db.execute("INSERT INTO u VALUES (NULL, 2)")  # a changed row with a null key: build it all
    with db.transaction() as tx:
        assert Builds(db._handle.ctx, tx._staging).changed_keys("m", plan) is None
        tx.abort()


def test_an_erased_input_key_leaves_the_rebuilt_table(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    # The erasure rewrites every version of a, the one the build read too: its record cannot say what changed.
    db.erase("a", pa.table({"id": pa.array([5], pa.int32())}), reason="request 17")
    commit = db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    assert commit.tables["m"].deleted == 1
    assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])


def test_changed_keys_leave_out_rows_changed_only_in_columns_the_query_does_not_read(db: udr.Lake) -> None:
    db.execute(SETUP)
    db.execute(f"CREATE TABLE m AS {LOCAL[0]}; ALTER TABLE m ADD PRIMARY KEY (id)")
    db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")  # reads a.x, not a.s
    plan = key_local(sqlglot.parse_one(LOCAL[0], dialect="duckdb"), ["id"], KEYS, pa.int32())
    assert plan is not None and plan.reads["a"] == frozenset({"id", "x"})
    db.execute("UPDATE a SET s = 'other' WHERE id < 50; UPDATE a SET x = 99, s = 'both' WHERE id = 60; "
               "UPDATE a SET x = x, s = s WHERE id = 61; DELETE FROM a WHERE id = 70; "
               "INSERT INTO a VALUES (400, 1, 'n')")
    with db.transaction() as tx:
        keys = Builds(db._handle.ctx, tx._staging).changed_keys("m", plan)
        tx.abort()
    assert keys is not None and sorted(keys.column(KEY_COLUMN).to_pylist()) == [60, 70, 400]
    commit = db.execute(f"CREATE OR REPLACE TABLE m AS {LOCAL[0]}")
    assert commit.tables["m"] == udr.TableChange(inserted=1, updated=1, deleted=1)
    assert rows(db) == sorted(db.query(LOCAL[0]).to_pylist(), key=lambda r: r["id"])


@pytest.mark.parametrize(("query", "reads"), [
    (LOCAL[0], {"a": {"id", "x"}, "b": {"y"}, "c": {"z"}}),  # a key in USING is no column: compared anyway
    # Unqualified columns count for every table: DuckDB resolves them, not this analysis.
    ("SELECT id, x + y AS v FROM a LEFT JOIN b USING (id)", {"a": {"id", "x", "y"}, "b": {"id", "x", "y"}}),
    ("SELECT a.*, b.y FROM a LEFT JOIN b USING (id)", {"a": None, "b": {"y"}}),
    ("SELECT * FROM a LEFT JOIN b USING (id)", {"a": None, "b": None}),
    ("SELECT t.id, t.x FROM a AS t JOIN a AS t2 USING (id) WHERE t2.s > 'a'", {"a": {"id", "x", "s"}}),
])
def test_the_columns_a_query_reads_of_each_input(query: str, reads: dict[str, set[str] | None]) -> None:
    plan = key_local(sqlglot.parse_one(query, dialect="duckdb"), ["id"], KEYS, pa.int32())
    assert plan is not None
    assert plan.reads == {name: None if read is None else frozenset(read) for name, read in reads.items()}
