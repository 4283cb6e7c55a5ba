"""Writing SQL through UDR leaves exactly the rows DuckDB leaves: random statement sequences, both sides."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import udr

SETUP = [
    "CREATE TABLE k (id INTEGER PRIMARY KEY, g INTEGER, v VARCHAR)",
    "CREATE TABLE u (g INTEGER, v VARCHAR)",
    "CREATE TABLE s (id INTEGER PRIMARY KEY, w VARCHAR)",
    "INSERT INTO s SELECT i, 'w' || (i % 3) FROM range(0, 12) r(i)",
]

small = st.integers(0, 9)
word = st.sampled_from(["'a'", "'b'", "NULL", "v || 'x'", "upper(v)"])
cond = st.builds(lambda c, n: f"{c} {n}", st.sampled_from(["id <", "id >=", "g =", "g <>", "id % 3 ="]),
                 small) | st.just("v IS NULL")
ucond = st.builds(lambda n: f"g < {n}", small) | st.just("v IS NULL") | st.just("v = 'a'")


@st.composite
def statements(draw: st.DrawFn) -> str:
    """One writing statement over tables k (keyed), u (unkeyed) and s (a source)."""
    n = draw(small)
    choice = draw(st.integers(0, 14))
    if choice == 0:
        return (f"INSERT INTO k SELECT i, i % 4, 'v' || i FROM range({n}, {n + draw(small)}) r(i) "
                "WHERE i NOT IN (SELECT id FROM k)")
    if choice == 1:
        value = draw(word).replace("v ||", "'p' ||").replace("upper(v)", "'q'")
        return f"INSERT OR REPLACE INTO k VALUES ({n}, {draw(small)}, {value})"
    if choice == 2:
        return f"UPDATE k SET v = {draw(word)}, g = g + 1 WHERE {draw(cond)}"
    if choice == 3:
        return f"UPDATE k SET g = {n} WHERE {draw(cond)}"  # often sets a value to itself
    if choice == 4:
        return f"DELETE FROM k WHERE {draw(cond)}"
    if choice == 5:
        return "UPDATE k SET v = s.w FROM s WHERE k.id = s.id AND s.id % 2 = 0"
    if choice == 6:
        return "DELETE FROM k USING s WHERE k.id = s.id AND s.w = 'w1'"
    if choice == 7:
        return (f"MERGE INTO k USING (SELECT id, w FROM s WHERE id % 4 = {n % 4}) src ON k.id = src.id "
                "WHEN MATCHED AND k.g > 1 THEN DELETE WHEN MATCHED THEN UPDATE SET v = src.w "
                "WHEN NOT MATCHED THEN INSERT VALUES (src.id, 0, src.w)")
    if choice == 8:
        return f"INSERT INTO u VALUES ({n}, {draw(st.sampled_from(['NULL', chr(39) + 'a' + chr(39)]))}), ({n}, 'a')"
    if choice == 9:
        return f"UPDATE u SET v = {draw(word)} WHERE {draw(ucond)}"
    if choice == 10:
        return f"DELETE FROM u WHERE {draw(ucond)}"
    if choice == 11:
        return f"INSERT INTO u SELECT g, v FROM k WHERE {draw(cond)}"
    if choice == 12:
        # Few names, so columns are often added back after a drop (they must come back empty).
        return f"ALTER TABLE u ADD COLUMN x{draw(st.integers(0, 2))} {draw(st.sampled_from(['INTEGER', 'BIGINT']))}"
    if choice == 13:
        j = draw(st.integers(0, 2))
        return draw(st.sampled_from([f"ALTER TABLE u DROP COLUMN x{j}", f"UPDATE u SET x{j} = g WHERE {draw(ucond)}",
                                     f"ALTER TABLE u RENAME COLUMN x{j} TO x{(j + 1) % 3}"]))
    return f"CREATE OR REPLACE TABLE u AS SELECT * FROM u WHERE {draw(ucond)}"


def rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
    return sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(statements(), min_size=1, max_size=6))
def test_random_statements_leave_what_duckdb_leaves(tmp_path_factory: pytest.TempPathFactory,
                                                    script: list[str]) -> None:
    path: Path = tmp_path_factory.mktemp("lake")
    plain = duckdb.connect()
    with udr.open(path) as db:
        for statement in SETUP:
            plain.execute(statement)
        db.execute(";\n".join(SETUP))
        for statement in script:
            try:
                plain.execute(statement)
            except duckdb.Error:
                with pytest.raises(udr.UdrError):
                    db.execute(statement)
                continue
            before = {t: db.row_count(t) for t in ("k", "u")}
            head = db.commit_info("main").id
            commit = db.execute(statement)
            for table in ("k", "u", "s"):
                ours = [tuple(r.values()) for r in db.query(f"SELECT * FROM {table}").to_pylist()]
                assert rows(plain, table) == sorted(ours, key=repr), statement
            for table, change in (commit.tables.items() if commit.id != head else []):
                # Net counts agree with the row counts before and after.
                assert before[table] + change.inserted - change.deleted == db.row_count(table)


def test_update_setting_a_value_to_itself_changes_no_row(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER); INSERT INTO t SELECT i, i FROM range(100) r(i)")
        head = db.commit_info("main")
        same = db.execute("UPDATE t SET x = id WHERE id < 50")
        assert same.id == head.id  # nothing changed, so no commit
        changed = db.execute("UPDATE t SET x = 0 WHERE id < 50")
        assert changed.tables["t"] == udr.TableChange(0, 49, 0)  # row 0 already held 0


def test_statements_in_one_transaction_see_each_other_and_commit_once(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        start = db.commit_info("main")
        with db.transaction(message="batch") as tx:
            tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)")
            tx.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
            assert tx.read("t").num_rows == 2
            tx.execute("UPDATE t SET x = x * 10 WHERE id = 2")
            assert tx.sql("SELECT x FROM t WHERE id = 2").fetchall() == [(20,)]
        commit = tx.committed
        assert commit is not None and commit.parents == (start.id,)
        assert commit.tables["t"] == udr.TableChange(2, 0, 0)
        assert db.query("SELECT * FROM t ORDER BY id").to_pylist() == [{"id": 1, "x": 1}, {"id": 2, "x": 20}]


FIXED = [
    "INSERT INTO k SELECT i, i % 4, 'v' || i FROM range(0, 12) r(i)",
    "INSERT INTO u SELECT g, v FROM k",
    "INSERT INTO u SELECT g, v FROM k WHERE id < 3",  # duplicate rows in an unkeyed table
    "UPDATE k SET v = upper(v), g = g + 1 WHERE id % 3 = 0",
    "UPDATE k AS x SET v = s.w FROM s WHERE x.id = s.id AND s.id > 8",
    "DELETE FROM k USING s WHERE k.id = s.id AND s.w = 'w1'",
    "INSERT INTO k VALUES (100, 1, 'new') ON CONFLICT DO NOTHING",
    "INSERT INTO k VALUES (0, 7, 'conflict') ON CONFLICT (id) DO UPDATE SET g = excluded.g",
    "INSERT OR REPLACE INTO k BY NAME SELECT 'by name' AS v, 5 AS id, 0 AS g",
    "MERGE INTO k USING s ON k.id = s.id WHEN MATCHED AND k.g > 2 THEN DELETE "
    "WHEN MATCHED THEN UPDATE SET v = s.w WHEN NOT MATCHED THEN INSERT VALUES (s.id, -1, s.w)",
    "ALTER TABLE u ADD COLUMN x0 INTEGER",
    "UPDATE u SET x0 = g * 2 WHERE g > 1",
    "DELETE FROM u WHERE v = 'V3' OR x0 = 4",
    "ALTER TABLE u DROP COLUMN x0",
    "CREATE OR REPLACE TABLE u AS SELECT * FROM u WHERE g <> 2",
    "INSERT INTO u SELECT * FROM u",
    "UPDATE k SET id = id + 1000 WHERE id = 100",  # a key change: run for real on a copy
    "WITH x AS (SELECT id FROM s WHERE id < 4) UPDATE k SET v = 'cte' WHERE id IN (SELECT id FROM x)",
    "UPDATE k SET v = sub.w FROM (SELECT id, w FROM s) AS sub WHERE k.id = sub.id + 5",
    "WITH x AS (SELECT 2 AS id) DELETE FROM k WHERE id IN (SELECT id FROM x)",
    "UPDATE k SET g = (SELECT max(g) FROM k) WHERE id = 9",
    "CREATE TABLE n AS SELECT k.id, k.v, s.w FROM k JOIN s USING (id)",
    "DROP TABLE n",
]


def test_every_statement_kind_leaves_what_duckdb_leaves(tmp_path: Path) -> None:
    plain = duckdb.connect()
    with udr.open(tmp_path / "lake") as db:
        for statement in SETUP:
            plain.execute(statement)
        db.execute(";".join(SETUP))
        for statement in FIXED:
            plain.execute(statement)
            db.execute(statement)
            for table in ("k", "u", "s"):
                ours = [tuple(r.values()) for r in db.query(f"SELECT * FROM {table}").to_pylist()]
                assert rows(plain, table) == sorted(ours, key=repr), statement
        assert db.tables() == ["k", "s", "u"]
