"""The core API (issue #2) driven as a user drives it: open, transactions, conveniences, reads at any
version, SQL, the log, and the maintenance calls (verify, rebuild, gc, stats)."""

from __future__ import annotations

import getpass
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import udr
from udr.log.refspec import Ref

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ORDERS = {"id": [1, 2, 3, 4], "status": ["ok", "void", "ok", "void"], "amount": [10.0, 20.0, 30.0, 40.0]}


def rows(table: pa.Table, *order_by: str) -> list[dict[str, object]]:
    """Rows as dicts, sorted (by `order_by`, default every column) so that storage order never matters."""
    keys = list(order_by) or table.column_names
    out: list[dict[str, object]] = table.sort_by([(k, "ascending") for k in keys]).to_pylist()
    return out


def sql_rows(db: udr.Lake, query: str, **kwargs: object) -> list[tuple[object, ...]]:
    return db.sql(query, **kwargs).fetchall()  # type: ignore[arg-type]


# -- opening --------------------------------------------------------------------------------------------


def test_a_new_lake_has_one_empty_root_commit_on_main(db: udr.Lake, lake_path: Path) -> None:
    [root] = db.log()
    assert root.parents == ()
    assert root.seq == 0
    assert root.branch == "main"
    assert root.tables == {}
    assert HEX64.match(root.id)
    assert db.tables() == []
    assert db.stats() == udr.LakeStats(commits=1, chunks=0, logical_bytes=0, stored_bytes=0)
    report = db.verify()
    assert report.ok and report.commits_checked == 1 and report.problems == []
    assert (lake_path / "FORMAT").is_file()


def test_open_creates_missing_parents_and_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "lake"
    with udr.open(path) as db:
        commit = db.append("orders", ORDERS)
    with udr.open(str(path)) as db:
        assert db.log()[0].id == commit.id
        assert len(db.log()) == 2
        assert rows(db.read("orders"), "id") == rows(pa.table(ORDERS), "id")


def test_open_an_existing_empty_directory_makes_a_lake(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with udr.open(tmp_path / "empty") as db:
        assert len(db.log()) == 1


def test_close_ends_the_handle_and_is_idempotent(lake_path: Path) -> None:
    with udr.open(lake_path) as db:
        db.append("orders", ORDERS)
    with pytest.raises(udr.UdrError):
        db.tables()
    db.close()


def test_close_aborts_open_transactions(lake_path: Path) -> None:
    db = udr.open(lake_path)
    tx = db.transaction()
    tx.append("orders", ORDERS)
    db.close()
    with pytest.raises(udr.UsageError):
        tx.commit()
    with udr.open(lake_path) as again:
        assert again.tables() == []


def test_two_handles_on_one_lake_see_each_other_and_close_independently(lake_path: Path) -> None:
    first = udr.open(lake_path)
    second = udr.open(lake_path)
    first.append("orders", ORDERS)
    assert second.tables() == ["orders"]
    first.close()
    second.append("more", {"x": [1]})
    assert second.tables() == ["more", "orders"]
    second.close()


# -- transactions ---------------------------------------------------------------------------------------


def test_the_issue_example_commits_every_change_atomically(db: udr.Lake) -> None:
    db.append("tmp", {"x": [1, 2]})
    db.append("scores", {"name": ["a", "b", "c"], "score": [1, 2, 3]})
    head = db.log()[0]
    schema = pa.schema([("id", pa.int64()), ("owner", pa.string())])
    with db.transaction(branch="main", message="nightly refresh", author="etl", metadata={"run": "42"}) as tx:
        tx.create_table("accounts", schema, primary_key=["id"])
        tx.append("orders", ORDERS)
        tx.overwrite("scores", {"name": ["z"], "score": [9]})
        assert tx.delete("orders", "status = 'void'") == 2
        tx.drop_table("tmp")
        assert sorted(tx.read("orders").column("id").to_pylist()) == [1, 3]
        assert tx.read("scores").to_pylist() == [{"name": "z", "score": 9}]
        assert db.tables() == ["scores", "tmp"], "uncommitted changes leaked"
        assert db.log()[0] == head
    c = tx.committed
    assert isinstance(c, udr.Commit)
    assert db.log()[0] == c
    assert db.tables() == ["accounts", "orders", "scores"]
    assert sorted(db.read("orders").column("id").to_pylist()) == [1, 3]
    assert db.primary_key("accounts") == ["id"]
    assert db.schema("accounts").equals(schema)
    assert db.read("accounts").num_rows == 0
    assert (c.message, c.author, c.metadata, c.branch) == ("nightly refresh", "etl", {"run": "42"}, "main")
    assert c.parents == (head.id,)
    assert c.tables == {
        "accounts": udr.TableChange(0, 0, 0),
        "orders": udr.TableChange(inserted=2),
        "scores": udr.TableChange(inserted=1, deleted=3),
        "tmp": udr.TableChange(deleted=2),
    }


def test_delete_by_predicate_in_a_transaction(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    with db.transaction() as tx:
        assert tx.delete("orders", "status = 'void'") == 2
        assert tx.read("orders").column("id").to_pylist() == [1, 3]
        assert db.read("orders").num_rows == 4
    assert tx.committed is not None
    assert tx.committed.tables == {"orders": udr.TableChange(deleted=2)}
    assert sorted(db.read("orders").column("id").to_pylist()) == [1, 3]


def test_a_transaction_reads_its_own_writes(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    tx = db.transaction()
    tx.delete("orders", "id <= 2")
    assert sorted(tx.read("orders").column("id").to_pylist()) == [3, 4]
    tx.append("orders", {"id": [5], "status": ["new"], "amount": [1.0]})
    assert sorted(tx.read("orders").column("id").to_pylist()) == [3, 4, 5]
    tx.overwrite("orders", {"id": [6], "status": ["new"], "amount": [1.0]})
    assert tx.read("orders").column("id").to_pylist() == [6]
    assert tx.read("orders", columns=["id"]).column_names == ["id"]
    assert tx.tables() == ["orders"]
    tx.drop_table("orders")
    assert tx.tables() == []
    with pytest.raises(udr.TableNotFound):
        tx.read("orders")
    tx.abort()
    assert db.read("orders").num_rows == 4


def test_an_exception_in_the_block_aborts_and_nothing_becomes_visible(
    db: udr.Lake, make_big: Callable[..., pa.Table]
) -> None:
    db.append("orders", ORDERS)
    before = (db.log(), db.tables(), db.stats())
    with pytest.raises(RuntimeError, match="boom"), db.transaction() as tx:
        tx.append("orders", {"id": [9], "status": ["x"], "amount": [0.0]})
        tx.append("big", make_big())
        tx.drop_table("orders")
        raise RuntimeError("boom")
    assert tx.committed is None
    assert (db.log(), db.tables(), db.stats()) == before
    assert db.read("orders").num_rows == 4


def test_explicit_commit_and_abort(db: udr.Lake) -> None:
    tx = db.transaction(message="by hand")
    tx.append("orders", ORDERS)
    commit = tx.commit()
    assert commit == tx.committed == db.log()[0]
    tx.abort()  # a no-op after commit
    with pytest.raises(udr.UsageError):
        tx.commit()
    with pytest.raises(udr.UsageError):
        tx.append("orders", ORDERS)
    aborted = db.transaction()
    aborted.append("orders", ORDERS)
    aborted.abort()
    aborted.abort()
    with pytest.raises(udr.UsageError):
        aborted.append("orders", ORDERS)
    assert db.log()[0] == commit
    assert db.read("orders").num_rows == 4


def test_a_transaction_that_changes_nothing_writes_no_commit(db: udr.Lake) -> None:
    db.create_table("accounts", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
    db.append("accounts", {"id": [1], "v": ["a"]})
    head = db.log()[0]
    with db.transaction(message="nothing") as tx:
        pass
    assert tx.committed == head
    assert db.upsert("accounts", {"id": [1], "v": ["a"]}) == head
    assert db.log()[0] == head
    assert len(db.log()) == 3


def test_conveniences_return_their_commit(db: udr.Lake) -> None:
    made = [
        db.create_table("accounts", pa.schema([("id", pa.int64())]), primary_key=["id"]),
        db.append("orders", ORDERS, message="load"),
        db.overwrite("orders", {"id": [7], "status": ["ok"], "amount": [1.0]}),
        db.append("orders", {"id": [8], "status": ["void"], "amount": [2.0]}),
        db.delete("orders", "status = 'void'"),
        db.drop_table("accounts"),
    ]
    assert [c.id for c in reversed(db.log()[:6])] == [c.id for c in made]
    assert made[1].message == "load"
    assert all(c.message for c in made), "a convenience commit should get a default message"
    assert made[2].tables == {"orders": udr.TableChange(inserted=1, deleted=4)}
    assert made[4].tables == {"orders": udr.TableChange(deleted=1)}
    assert db.tables() == ["orders"]
    assert db.read("orders").to_pylist() == [{"id": 7, "status": "ok", "amount": 1.0}]


def test_commit_fields(db: udr.Lake) -> None:
    before = datetime.now(timezone.utc)
    first = db.append("orders", ORDERS, author="me")
    second = db.append("orders", ORDERS, author="me")
    after = datetime.now(timezone.utc)
    for c in (first, second):
        assert HEX64.match(c.id)
        assert c.short_id == c.id[:10]
        assert c.time.tzinfo is not None and c.time.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= c.time <= after + timedelta(seconds=1)
        assert c.author == "me"
        assert c.branch == "main"
    assert second.parents == (first.id,)
    assert second.seq == first.seq + 1
    assert first.time < second.time
    assert db.commit_info(first.id) == first
    assert db.commit_info(second) == second


def test_author_defaults_to_udr_author_then_the_os_user(db: udr.Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UDR_AUTHOR", "etl-bot")
    assert db.append("a", {"x": [1]}).author == "etl-bot"
    with db.transaction() as tx:
        tx.append("a", {"x": [2]})
    assert tx.committed is not None and tx.committed.author == "etl-bot"
    assert db.append("a", {"x": [3]}, author="explicit").author == "explicit"
    monkeypatch.delenv("UDR_AUTHOR")
    assert db.append("a", {"x": [4]}).author == getpass.getuser()


def test_max_length_names_are_fine(db: udr.Lake) -> None:
    name = "t" * 255
    db.append(name, {"x": [1]})
    assert db.tables() == [name]


# -- data inputs ----------------------------------------------------------------------------------------


def _reader() -> pa.RecordBatchReader:
    batches = pa.table({"x": [1, 2, 3], "s": ["a", "b", "c"]}).to_batches(max_chunksize=1)
    return pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))


INPUTS: dict[str, Callable[[], object]] = {
    "arrow table": lambda: pa.table({"x": [1, 2, 3], "s": ["a", "b", "c"]}),
    "record batch": lambda: pa.record_batch({"x": [1, 2, 3], "s": ["a", "b", "c"]}),
    "batch reader": _reader,
    "pandas": lambda: pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]}, index=[7, 8, 9]),
    "polars": lambda: pl.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]}),
    "dict": lambda: {"x": [1, 2, 3], "s": ["a", "b", "c"]},
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_input_kind_is_accepted(db: udr.Lake, kind: str) -> None:
    db.append("t", INPUTS[kind]())
    assert db.schema("t").names == ["x", "s"]
    assert pa.types.is_integer(db.schema("t").field("x").type)
    assert rows(db.read("t"), "x") == [{"x": 1, "s": "a"}, {"x": 2, "s": "b"}, {"x": 3, "s": "c"}]
    # Any other kind appends to the same table.
    for other in INPUTS.values():
        db.append("t", other())
    assert db.read("t").num_rows == 3 * (len(INPUTS) + 1)
    db.overwrite("t", INPUTS[kind]())
    assert db.read("t").num_rows == 3


def test_a_batch_reader_is_consumed_as_a_stream(db: udr.Lake) -> None:
    schema = pa.schema([("x", pa.int64())])
    pulled: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for n in range(50):
            pulled.append(n)
            yield pa.record_batch([pa.array(range(n * 1000, (n + 1) * 1000), pa.int64())], schema=schema)

    db.append("stream", pa.RecordBatchReader.from_batches(schema, batches()))
    assert len(pulled) == 50
    stats = sql_rows(db, "SELECT count(*), count(DISTINCT x), min(x), max(x) FROM stream")
    assert stats == [(50_000, 50_000, 0, 49_999)]


def test_a_failing_stream_aborts_the_write(db: udr.Lake) -> None:
    db.append("stream", {"x": [1]})
    schema = pa.schema([("x", pa.int64())])

    def batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([2], pa.int64())], schema=schema)
        raise OSError("source went away")

    head = db.log()[0]
    with pytest.raises(OSError, match="source went away"):
        db.append("stream", pa.RecordBatchReader.from_batches(schema, batches()))
    assert db.log()[0] == head
    assert db.read("stream").column("x").to_pylist() == [1]


def test_schema_evolution_adds_nullable_columns(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    big = make_big()
    db.append("t", big)
    wider = make_big(seed=1).append_column("e", pa.array(["new"] * big.num_rows))
    with pytest.raises(udr.SchemaError, match="e"):
        db.append("t", wider)
    db.append("t", wider, evolve=True)
    field = db.schema("t").field("e")
    assert field.nullable and field.type == pa.string()
    assert sql_rows(db, "SELECT count(*), count(e) FROM t") == [(2 * big.num_rows, big.num_rows)]
    assert db.read("t", where="e IS NULL").num_rows == big.num_rows
    assert db.schema("t", at="main~1").names == ["a", "b", "c", "d"]
    # Missing columns are filled with nulls under evolve.
    db.append("t", {"a": [1]}, evolve=True)
    assert db.read("t", where="e IS NULL").num_rows == big.num_rows + 1
    assert db.read("t", where="b IS NULL").to_pylist() == [{"a": 1, "b": None, "c": None, "d": None, "e": None}]


def test_compatible_types_are_cast_to_the_table_type(db: udr.Lake) -> None:
    db.create_table("t", pa.schema([("x", pa.int64()), ("s", pa.string())]))
    db.append("t", pa.table({"x": pa.array([1], pa.int8()), "s": pa.array(["a"], pa.large_string())}))
    assert db.schema("t").field("x").type == pa.int64()
    assert db.read("t").to_pylist() == [{"x": 1, "s": "a"}]


# -- reading --------------------------------------------------------------------------------------------


def test_read_columns_and_where(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    assert db.read("orders", columns=["amount", "id"]).column_names == ["amount", "id"]
    ok = db.read("orders", where="status = 'ok' AND amount > 15")
    assert ok.to_pylist() == [{"id": 3, "status": "ok", "amount": 30.0}]


def test_sql_returns_a_relation_and_connect_a_connection_with_views(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    db.append("users", {"id": [1], "name": ["ann"]})
    rel = db.sql("SELECT status, sum(amount) AS total FROM orders GROUP BY status ORDER BY status")
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rel.fetchall() == [("ok", 40.0), ("void", 60.0)]
    assert rel.to_arrow_table().column_names == ["status", "total"]
    con = db.connect()
    try:
        assert isinstance(con, duckdb.DuckDBPyConnection)
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {v for v in views if not v.startswith("__udr_")} == {"orders", "users", "udr_log", "udr_log_tables",
                                                                    "udr_refs"}
        assert con.execute("SELECT count(*) FROM orders JOIN users USING (id)").fetchall() == [(1,)]
    finally:
        con.close()


def test_sql_reads_chunk_files_and_deletions(db: udr.Lake, make_big: Callable[..., pa.Table],
                                             chunk_files: Callable[[Path], list[Path]], lake_path: Path) -> None:
    big = make_big()
    db.append("big", big)
    assert len(chunk_files(lake_path)) == 1
    threshold = int(pc.approximate_median(big.column("a")).as_py())
    db.delete("big", f"a < {threshold}")
    db.delete("big", f"a > {threshold} AND b % 2 = 0")
    expected = big.filter(pc.and_(pc.greater_equal(big.column("a"), threshold),
                                  pc.or_(pc.equal(big.column("a"), threshold),
                                         pc.equal(pc.bit_wise_and(big.column("b"), 1), 1))))
    [(count, total)] = sql_rows(db, "SELECT count(*), sum(c::HUGEINT) FROM big")
    assert count == expected.num_rows == db.read("big").num_rows
    assert total == sum(expected.column("c").to_pylist())
    assert db.log()[0].tables["big"].deleted > 0


def test_overwrite_replaces_rows(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    commit = db.overwrite("orders", {"id": [9], "status": ["ok"], "amount": [0.5]})
    assert commit.tables == {"orders": udr.TableChange(inserted=1, deleted=4)}
    assert db.read("orders").to_pylist() == [{"id": 9, "status": "ok", "amount": 0.5}]
    assert db.read("orders", at="main~1").num_rows == 4


def test_keyed_table_refuses_duplicate_keys(db: udr.Lake) -> None:
    db.create_table("accounts", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
    db.append("accounts", {"id": [1, 2], "v": ["a", "b"]})
    with pytest.raises(udr.KeyViolation):
        db.append("accounts", {"id": [2], "v": ["again"]})
    with pytest.raises(udr.KeyViolation):
        db.append("accounts", {"id": [3, 3], "v": ["x", "y"]})
    assert db.read("accounts").num_rows == 2


# -- versions -------------------------------------------------------------------------------------------


@pytest.fixture
def history(db: udr.Lake) -> list[udr.Commit]:
    """root, +orders(4 rows), +1 row, -void rows, +users: five commits on main."""
    return [
        db.log()[0],
        db.append("orders", ORDERS),
        db.append("orders", {"id": [5], "status": ["ok"], "amount": [50.0]}),
        db.delete("orders", "status = 'void'"),
        db.append("users", {"id": [1], "name": ["ann"]}),
    ]


def test_at_accepts_every_kind_of_ref(db: udr.Lake, history: list[udr.Commit]) -> None:
    target = history[2]
    refs: list[Ref] = [
        target.id, target.id[:7], target.id[:20], target, target.time, "main~2", "main~1~1", "main~~",
        history[3].id[:9] + "~1",
    ]
    for ref in refs:
        assert db.read("orders", at=ref).num_rows == 5, ref
        assert db.tables(at=ref) == ["orders"], ref
        assert sql_rows(db, "SELECT count(*) FROM orders", at=ref) == [(5,)], ref
        assert db.resolve(ref) == target.id, ref
    assert db.resolve("main") == db.resolve("main~0") == history[-1].id


def test_at_a_time_picks_the_newest_commit_at_or_before_it(db: udr.Lake, history: list[udr.Commit]) -> None:
    for older, newer in pairwise(history):
        assert db.resolve(newer.time - timedelta(microseconds=1)) == older.id
        assert db.resolve(newer.time) == newer.id
    assert db.resolve(history[-1].time + timedelta(days=1)) == history[-1].id
    local = history[1].time.astimezone(timezone(timedelta(hours=-7)))
    assert db.resolve(local) == history[1].id
    with pytest.raises(udr.RefNotFound):
        db.resolve(history[0].time - timedelta(seconds=1))


def test_tables_schema_and_read_at_old_versions(db: udr.Lake, history: list[udr.Commit]) -> None:
    assert db.tables(at=history[0]) == []
    assert db.tables(at=history[3]) == ["orders"]
    assert db.tables() == ["orders", "users"]
    assert sorted(db.read("orders", at=history[1]).column("id").to_pylist()) == [1, 2, 3, 4]
    assert sorted(db.read("orders").column("id").to_pylist()) == [1, 3, 5]
    assert db.schema("orders", at=history[1]).names == ["id", "status", "amount"]
    with pytest.raises(udr.TableNotFound):
        db.read("users", at=history[3])


def test_versioned_names_in_one_query(db: udr.Lake, history: list[udr.Commit]) -> None:
    removed = sql_rows(
        db, 'SELECT id FROM "orders@main~2" EXCEPT SELECT id FROM orders ORDER BY id'
    )
    assert removed == [(2,), (4,)]
    assert sql_rows(db, f'SELECT count(*) FROM "orders@{history[1].id[:8]}"') == [(4,)]
    assert sql_rows(db, f'SELECT count(*) FROM "orders@{history[1].id}" o JOIN "orders@main" n USING (id)') == [(2,)]
    # The version named in the query wins over `at`.
    assert sql_rows(db, 'SELECT count(*) FROM "orders@main"', at=history[1]) == [(3,)]


def test_tags_and_branches_are_refs(db: udr.Lake, history: list[udr.Commit]) -> None:
    db.tag("v1", history[1])
    db.create_branch("dev", at=history[2].id)
    assert db.read("orders", at="v1").num_rows == 4
    assert db.resolve("v1~1") == history[0].id
    assert sql_rows(db, 'SELECT count(*) FROM "orders@v1"') == [(4,)]
    assert db.tables(branch="dev") == ["orders"]
    assert db.read("orders", branch="dev").num_rows == 5
    with db.transaction(branch="dev", message="on dev") as tx:
        tx.append("dev_only", {"x": [1]})
    assert tx.committed is not None and tx.committed.branch == "dev"
    assert tx.committed.parents == (history[2].id,)
    assert db.tables(branch="dev") == ["dev_only", "orders"]
    assert "dev_only" not in db.tables()
    assert sql_rows(db, "SELECT count(*) FROM dev_only", branch="dev") == [(1,)]
    assert db.read("orders", branch="dev", at="dev~1").num_rows == 5
    assert [c.id for c in db.log(branch="dev")] == [tx.committed.id] + [c.id for c in reversed(history[:3])]
    assert db.log()[0] == history[-1]


def test_log_is_newest_first_and_filters_by_table_and_limit(db: udr.Lake, history: list[udr.Commit]) -> None:
    assert db.log() == list(reversed(history))
    assert db.log(limit=2) == [history[4], history[3]]
    assert db.log(table="orders") == [history[3], history[2], history[1]]
    assert db.log(table="orders", limit=1) == [history[3]]
    assert db.log(table="nothing") == []
    assert all(isinstance(c, udr.Commit) for c in db.log())


def test_commit_info_of_refs(db: udr.Lake, history: list[udr.Commit]) -> None:
    assert db.commit_info("main") == history[-1]
    assert db.commit_info(history[1].id[:7]) == history[1]
    assert db.commit_info("main~3") == history[1]


# -- concurrency ----------------------------------------------------------------------------------------


def test_transactions_on_one_handle_are_isolated_and_rebase_when_disjoint(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    first = db.transaction(message="first")
    second = db.transaction(message="second")
    first.append("a", {"x": [1]})
    second.append("b", {"y": [2]})
    second.delete("orders", "id = 1")
    assert first.tables() == ["a", "orders"]
    assert second.tables() == ["b", "orders"]
    assert first.read("orders").num_rows == 4
    one = first.commit()
    assert "a" not in second.tables(), "a transaction sees commits made after it began"
    two = second.commit()
    assert two.parents == (one.id,)
    assert db.tables() == ["a", "b", "orders"]
    assert db.read("orders").num_rows == 3
    assert db.verify().ok


def test_an_overwrite_of_a_table_changed_since_the_transaction_began_is_a_conflict(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    late = db.transaction()
    late.overwrite("orders", {"id": [1, 2, 3, 4, 6], "status": ["late"] * 5, "amount": [6.0] * 5})
    late.append("other", {"x": [1]})
    won = db.append("orders", {"id": [5], "status": ["won"], "amount": [5.0]})
    with pytest.raises(udr.ConflictError) as info:
        late.commit()
    message = str(info.value)
    assert "orders" in message and won.id[:10] in message
    assert info.value.retryable
    assert db.log()[0] == won
    assert db.tables() == ["orders"]
    assert sorted(db.read("orders").column("id").to_pylist()) == [1, 2, 3, 4, 5]
    with pytest.raises(udr.UsageError):
        late.commit()


def test_two_transactions_creating_one_table_conflict(db: udr.Lake) -> None:
    first, second = db.transaction(), db.transaction()
    first.append("new", {"x": [1]})
    second.create_table("new", pa.schema([("y", pa.string())]))
    first.commit()
    with pytest.raises(udr.ConflictError, match="new"):
        second.commit()
    assert db.schema("new").names == ["x"]


def test_a_conflict_at_the_end_of_a_with_block_raises_and_commits_nothing(db: udr.Lake) -> None:
    db.append("tmp", {"x": [1]})
    with pytest.raises(udr.ConflictError, match="tmp"), db.transaction() as tx:
        tx.append("tmp", {"x": [2]})
        db.drop_table("tmp")
    assert tx.committed is None
    assert db.tables() == []


def test_threads_appending_to_different_tables_all_commit(db: udr.Lake) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3):
                db.append(f"t{n}", {"x": [i]})
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.tables() == ["t0", "t1", "t2", "t3"]
    assert all(db.read(f"t{n}").num_rows == 3 for n in range(4))
    assert len(db.log()) == 13
    assert db.verify().ok


# -- storage --------------------------------------------------------------------------------------------


def test_the_same_rows_in_two_tables_are_stored_once(
    db: udr.Lake, make_big: Callable[..., pa.Table], chunk_files: Callable[[Path], list[Path]], lake_path: Path
) -> None:
    big = make_big()
    db.append("one", big)
    once = db.stats()
    assert once.chunks == 1 and once.dedup_ratio == 1.0
    db.append("two", big)
    twice = db.stats()
    assert len(chunk_files(lake_path)) == 1
    assert (twice.chunks, twice.stored_bytes) == (once.chunks, once.stored_bytes)
    assert twice.logical_bytes == 2 * once.logical_bytes
    assert twice.dedup_ratio == pytest.approx(2.0)
    db.append("three", big)
    thrice = db.stats()
    assert (thrice.chunks, thrice.stored_bytes) == (once.chunks, once.stored_bytes)
    assert thrice.dedup_ratio == pytest.approx(3.0)
    assert thrice.commits == 4
    unchanged = db.overwrite("one", big)  # identical rows: a multiset overwrite changes nothing
    assert unchanged.id == db.log()[0].id and db.stats().commits == 4
    assert db.read("one").num_rows == big.num_rows


def test_small_rows_written_again_are_stored_once_too(db: udr.Lake) -> None:
    db.append("one", ORDERS)
    once = db.stats()
    db.append("two", ORDERS)
    db.append("three", ORDERS)
    again = db.stats()
    assert (again.chunks, again.stored_bytes) == (once.chunks, once.stored_bytes)
    assert again.dedup_ratio == pytest.approx(3.0)


def test_the_same_small_rows_in_other_batches_are_stored_once(db: udr.Lake) -> None:
    table = pa.table(ORDERS)
    db.append("one", table)
    db.append("two", pa.Table.from_batches(table.to_batches(max_chunksize=1)))
    db.append("three", pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3)))
    assert db.stats().chunks == 1


def test_appending_the_same_rows_twice_keeps_both_copies(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    big = make_big()
    db.append("t", big)
    db.append("t", big)
    assert db.read("t").num_rows == 2 * big.num_rows
    db.delete("t", f"a = {big.column('a')[0].as_py()}")
    assert db.read("t").num_rows == 2 * big.num_rows - 2
    assert db.verify().ok


def test_gc_frees_the_chunks_of_an_aborted_transaction(db: udr.Lake, make_big: Callable[..., pa.Table],
                                                      chunk_files: Callable[[Path], list[Path]],
                                                      lake_path: Path) -> None:
    db.append("kept", make_big(seed=1))
    assert db.gc() == 0
    [kept_file] = chunk_files(lake_path)
    tx = db.transaction()
    tx.append("dropped", make_big(seed=2))
    [orphan] = [f for f in chunk_files(lake_path) if f != kept_file]
    orphan_size = orphan.stat().st_size
    tx.abort()
    assert db.gc() == orphan_size
    assert chunk_files(lake_path) == [kept_file]
    assert db.read("kept").num_rows > 0
    assert db.verify().ok
    assert db.gc() == 0


def test_gc_keeps_chunks_of_open_transactions_and_of_old_versions(db: udr.Lake, make_big: Callable[..., pa.Table],
                                                                   chunk_files: Callable[[Path], list[Path]],
                                                                   lake_path: Path) -> None:
    db.append("t", make_big(seed=1))
    db.overwrite("t", make_big(seed=2))
    tx = db.transaction()
    tx.append("pending", make_big(seed=3))
    assert len(chunk_files(lake_path)) == 3
    assert db.gc() == 0
    tx.commit()
    assert db.read("t", at="main~2").sort_by("a").equals(make_big(seed=1).sort_by("a"))
    assert db.read("pending").num_rows > 0
    assert db.verify().ok


def test_gc_on_another_handle_keeps_chunks_of_an_open_transaction(lake_path: Path,
                                                                   make_big: Callable[..., pa.Table]) -> None:
    with udr.open(lake_path) as writer, udr.open(lake_path) as cleaner:
        tx = writer.transaction()
        tx.append("t", make_big())
        assert cleaner.gc() == 0
        tx.commit()
        assert writer.read("t").num_rows > 0


def test_verify_counts_what_it_checked(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    db.append("big", make_big())
    db.append("small", ORDERS)
    db.delete("small", "id = 1")
    report = db.verify()
    assert report.ok
    assert report.commits_checked == db.stats().commits == 4
    assert report.chunks_checked == db.stats().chunks == 2 and report.blobs_checked > 0


def test_verify_and_rebuild_report_progress(db: udr.Lake) -> None:
    db.append("a", {"x": [1]})
    seen: list[tuple[int, int]] = []
    db.verify(lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2, 2)
    seen.clear()
    assert db.rebuild(lambda done, total: seen.append((done, total))) == 2
    assert seen[-1] == (2, 2)


# -- rebuild --------------------------------------------------------------------------------------------


def _answers(db: udr.Lake) -> list[object]:
    """What a user can ask: the log, the figures, and every table's schema and rows at every commit of main
    (through one DuckDB connection per commit, and through `read` at the head)."""
    out: list[object] = [db.log(), db.stats()]
    for commit in db.log():
        tables = db.tables(at=commit)
        out.append(tables)
        con = db.connect(at=commit)
        try:
            for table in tables:
                out.append(str(db.schema(table, at=commit)))
                data = con.sql(f'SELECT * FROM "{table}"').to_arrow_table()
                out.append(data.sort_by([(c, "ascending") for c in data.column_names]))
        finally:
            con.close()
    for table in db.tables():
        data = db.read(table)
        out.append(data.sort_by([(c, "ascending") for c in data.column_names]))
    return out


def test_every_query_answers_the_same_after_rebuild(db: udr.Lake, lake_path: Path,
                                                    make_big: Callable[..., pa.Table]) -> None:
    db.append("big", make_big())
    db.append("orders", ORDERS)
    db.delete("orders", "status = 'void'")
    db.delete("big", "a % 3 = 0")
    db.append("orders", {"id": [9], "status": ["new"], "amount": [9.0], "note": ["n"]}, evolve=True)
    db.overwrite("scores", {"x": [1, 2]})
    db.drop_table("scores")
    with db.transaction() as tx:
        tx.append("orders", {"id": [10], "status": ["ok"], "amount": [1.0], "note": [None]})
        tx.append("users", {"id": [1]})
    expected = _answers(db)
    assert db.rebuild() == len(db.log())
    assert _answers(db) == expected
    shutil.rmtree(lake_path / "cache")
    assert db.rebuild() == len(db.log())
    assert _answers(db) == expected
    assert db.verify().ok
    db.close()
    assert not (lake_path / "cache").exists()
    with udr.open(lake_path) as again:
        assert _answers(again) == expected
        again.append("after", {"x": [1]})
        assert again.read("after").num_rows == 1


# -- deletes that see the transaction's own writes ---------------------------------------------------


def test_delete_rows_appended_earlier_in_the_same_transaction(db: udr.Lake) -> None:
    with db.transaction() as tx:
        tx.append("orders", ORDERS)
        assert tx.delete("orders", "status = 'void'") == 2
        assert sorted(tx.read("orders").column("id").to_pylist()) == [1, 3]
    assert tx.committed is not None
    assert tx.committed.tables == {"orders": udr.TableChange(inserted=2)}
    assert sorted(db.read("orders").column("id").to_pylist()) == [1, 3]


def test_two_deletes_in_one_transaction(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    with db.transaction() as tx:
        tx.delete("orders", "id = 1")
        tx.delete("orders", "id = 2")
    assert tx.committed is not None and tx.committed.tables == {"orders": udr.TableChange(deleted=2)}
    assert sorted(db.read("orders").column("id").to_pylist()) == [3, 4]


def test_delete_after_schema_evolution_in_one_transaction(db: udr.Lake) -> None:
    db.append("orders", ORDERS)
    with db.transaction() as tx:
        tx.append("orders", {"id": [5], "status": ["ok"], "amount": [5.0], "note": ["n"]}, evolve=True)
        tx.delete("orders", "id = 1")
    assert sorted(db.read("orders").column("id").to_pylist()) == [2, 3, 4, 5]
