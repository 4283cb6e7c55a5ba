"""The log in SQL: `udr_log`, `udr_log_tables` and `udr_refs` on every connection `db.sql`, `db.query` and
`db.connect` give, joinable with change tables, equal to what `db.log` returns, and rebuilt only when the
log or a ref moved."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

import udr
from udr.query.logviews import LogViews


@pytest.fixture
def history(db: udr.Lake) -> udr.Lake:
    """main: create t, two upserts (one by bob with a ticket), a branch `dev` with its own commit, a tag."""
    db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
    db.upsert("t", pa.table({"id": [1, 2], "v": ["a", "b"]}), author="ann", message="load")
    with db.transaction(message="fix b", author="bob", metadata={"ticket": "T-7", "src": "ui"}) as tx:
        tx.upsert("t", pa.table({"id": [2, 3], "v": ["B", "c"]}))
        tx.append("u", pa.table({"x": [1]}))
    db.create_branch("dev")
    db.delete("t", "id = 1", branch="dev", author="cy", message="drop 1")
    db.tag("v1")
    return db


def test_the_views_are_on_every_kind_of_connection(history: udr.Lake) -> None:
    db = history
    assert db.query("SELECT count(*) AS n FROM udr_log")["n"][0].as_py() == len(db.log("dev"))
    assert db.sql("SELECT count(*) FROM udr_refs").fetchall() == [(3,)]
    con = db.connect()
    try:
        assert con.execute("SELECT kind, name FROM udr_refs ORDER BY kind, name").fetchall() == [
            ("branch", "dev"), ("branch", "main"), ("tag", "v1")]
    finally:
        con.close()


def test_columns_and_types(history: udr.Lake) -> None:
    row = history.query("SELECT * FROM udr_log WHERE author = 'bob'").to_pylist()[0]
    commit = history.log(author="bob")[0]
    assert row == {"commit_id": commit.id, "seq": commit.seq, "parents": list(commit.parents), "branch": "main",
                   "time": commit.time, "author": "bob", "message": "fix b",
                   "metadata": [("src", "ui"), ("ticket", "T-7")]}
    types = {r[0]: r[1] for r in history.sql("DESCRIBE udr_log").fetchall()}
    assert types["time"] == "TIMESTAMP WITH TIME ZONE" and types["metadata"] == "MAP(VARCHAR, VARCHAR)"
    assert types["parents"] == "VARCHAR[]"
    assert history.sql("SELECT metadata['ticket'] FROM udr_log WHERE author = 'bob'").fetchall() == [("T-7",)]
    counts = history.query("SELECT table_name, inserted, updated, deleted FROM udr_log_tables "
                           f"WHERE commit_id = '{commit.id}' ORDER BY table_name").to_pylist()
    assert counts == [{"table_name": "t", "inserted": 1, "updated": 1, "deleted": 0},
                      {"table_name": "u", "inserted": 1, "updated": 0, "deleted": 0}]


def test_change_rows_join_the_log_on_commit_id(history: udr.Lake) -> None:
    root = history.log()[-1].id
    found = history.query(
        f'SELECT c.id, c._change, l.author, l.metadata[\'ticket\'] AS ticket FROM "t@{root}..main" c '
        "JOIN udr_log l ON c._commit_id = l.commit_id WHERE l.author = 'bob' ORDER BY c.id, c._change").to_pylist()
    assert found == [{"id": 2, "_change": "update_after", "author": "bob", "ticket": "T-7"},
                     {"id": 2, "_change": "update_before", "author": "bob", "ticket": "T-7"},
                     {"id": 3, "_change": "insert", "author": "bob", "ticket": "T-7"}]


def test_udr_log_equals_db_log_for_every_branch(history: udr.Lake) -> None:
    """Differential: each branch's `db.log` is exactly the udr_log rows reachable from its head, field for
    field, and udr_log holds nothing no branch or tag reaches."""
    db = history
    db.merge("dev", message="merge dev")
    db.create_branch("side", at="v1")
    with db.transaction("side", metadata={"k": "v"}) as tx:
        tx.append("w", pa.table({"x": [1]}))
    rows = {r["commit_id"]: r for r in db.query("SELECT * FROM udr_log").to_pylist()}
    tables = db.query("SELECT * FROM udr_log_tables").to_pylist()
    union: set[str] = set()
    for branch in db.branches():
        for commit in db.log(branch):
            union.add(commit.id)
            row = rows[commit.id]
            assert (row["seq"], tuple(row["parents"]), row["branch"], row["time"], row["author"], row["message"],
                    dict(row["metadata"])) == (commit.seq, commit.parents, commit.branch, commit.time, commit.author,
                                               commit.message, commit.metadata)
            assert {r["table_name"]: udr.TableChange(r["inserted"], r["updated"], r["deleted"])
                    for r in tables if r["commit_id"] == commit.id} == commit.tables
    assert set(rows) == union
    logged = [r["seq"] for r in db.query("SELECT seq FROM udr_log").to_pylist()]
    assert logged == sorted(r["seq"] for r in rows.values())


def test_a_reset_hides_commits_from_udr_log_and_the_views_follow_every_move(history: udr.Lake) -> None:
    db = history
    before = db.query("SELECT commit_id FROM udr_log")["commit_id"].to_pylist()
    bad = db.append("t", pa.table({"id": [9], "v": ["x"]}), message="bad")
    assert bad.id in db.query("SELECT commit_id FROM udr_log")["commit_id"].to_pylist()
    db.reset("main", bad.parents[0])
    assert db.query("SELECT commit_id FROM udr_log")["commit_id"].to_pylist() == before
    db.tag("keep", bad.id)
    assert bad.id in db.query("SELECT commit_id FROM udr_log")["commit_id"].to_pylist()
    assert db.sql("SELECT commit_id FROM udr_refs WHERE name = 'keep'").fetchall() == [(bad.id,)]


def test_the_views_are_cached_until_the_log_or_a_ref_moves(history: udr.Lake) -> None:
    views = history._handle.server._log_views
    assert isinstance(views, LogViews)
    first = views.tables()
    assert views.tables() is first
    history.create_branch("other")
    second = views.tables()
    assert second is not first and views.tables() is second
    history.append("u", pa.table({"x": [2]}))
    assert views.tables() is not second


def test_a_query_that_names_no_log_view_gets_none(history: udr.Lake) -> None:
    plain = "SELECT count(*) AS n FROM duckdb_views() WHERE starts_with(view_name, 'udr') AND NOT internal"
    assert history.query(plain)["n"][0].as_py() == 0
    named = "SELECT count(*) AS n FROM duckdb_views() WHERE view_name LIKE 'udr_%' AND NOT internal"
    assert history.query(named)["n"][0].as_py() == 3


def test_a_user_table_named_like_a_view_wins(db: udr.Lake) -> None:
    db.append("udr_refs", pa.table({"mine": [1]}))
    assert db.query("SELECT * FROM udr_refs").column_names == ["mine"]
    assert db.query("SELECT count(*) AS n FROM udr_log")["n"][0].as_py() == 2


def test_consumer_groups_are_refs_too(db: udr.Lake) -> None:
    db.append("t", pa.table({"x": [1]}))
    db.reset_group("g", db.resolve("main"))
    assert db.sql("SELECT name, kind, commit_id FROM udr_refs WHERE kind = 'group'").fetchall() == [
        ("g", "group", db.resolve("main"))]


def test_time_column_is_utc_and_matches_the_commit(db: udr.Lake) -> None:
    made = db.append("t", pa.table({"x": [1]}))
    when = db.query(f"SELECT time FROM udr_log WHERE commit_id = '{made.id}'")["time"][0].as_py()
    assert when == made.time and when.tzinfo is not None
    assert when.astimezone(timezone.utc) <= datetime.now(timezone.utc)


def test_an_incremental_rebuild_equals_a_fresh_one(history: udr.Lake) -> None:
    db = history
    views = db._handle.server._log_views
    assert isinstance(views, LogViews)

    def check() -> None:
        fresh = LogViews(db._handle.ctx.log).tables()
        for name, table in views.tables().items():
            keys = [(c, "ascending") for c in ("commit_id", "table_name", "name") if c in table.column_names]
            assert table.sort_by(keys).equals(fresh[name].sort_by(keys)), name

    check()
    hidden = db.append("t", pa.table({"id": [8], "v": ["h"]}), message="to hide")
    check()
    db.reset("main", hidden.parents[0])
    check()
    db.append("u", pa.table({"x": [5]}))
    db.delete_tag("v1")
    check()
    db.tag("back", hidden.id)
    check()
    db.delete_branch("dev", force=True)
    check()
