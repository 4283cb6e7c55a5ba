"""Keyed tables (issue #3) driven as a user drives them: primary keys, upsert, keyed overwrite, deletes with
deletion vectors, compaction, the change feed (`changes`, SQL `"t@A..B"`), row history and diffs.

The random-sequence checks against a model live in test_keyed_properties.py; these are the explicit cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import udr

DiskState = dict[str, str]
ORDERS = pa.schema([("id", pa.int64()), ("status", pa.string()), ("amount", pa.float64())])
CHANGE_COLUMNS = ["_change", "_commit_id", "_commit_seq", "_commit_time"]


def orders(*items: tuple[int | None, str | None, float | None]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(ORDERS.names, item)) for item in items], schema=ORDERS)


def rows(table: pa.Table, *order_by: str) -> list[dict[str, object]]:
    """Rows as dicts sorted by `order_by` (default: the first column), NaN made comparable."""
    keys = list(order_by) or table.column_names[:1]
    out = table.sort_by([(k, "ascending") for k in keys]).to_pylist()
    return [{k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in out]


def changed(table: pa.Table) -> list[tuple[object, ...]]:
    """(id, change) per change row, in feed order."""
    return list(zip(table.column("id").to_pylist(), table.column("_change").to_pylist()))


@pytest.fixture
def keyed(db: udr.Lake) -> udr.Lake:
    """A lake with `orders` keyed by id holding three rows."""
    db.create_table("orders", ORDERS, primary_key=["id"])
    db.append("orders", orders((1, "new", 10.0), (2, "new", 20.0), (3, "paid", 30.0)), message="load")
    return db


# -- key rules: violations change nothing -------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[udr.Lake, Path]]:
    """One lake shared by the key-violation tests (each must leave it byte-identical): keyed `orders`, a
    composite-keyed `lines`, a string-keyed `skus`, an unkeyed `log`, and warm caches."""
    path = tmp_path_factory.mktemp("keys") / "lake"
    db = udr.open(path)
    try:
        db.create_table("orders", ORDERS, primary_key=["id"])
        db.append("orders", orders((1, "new", 10.0), (2, "new", 20.0)))
        db.create_table("lines", pa.schema([("order", pa.int64()), ("line", pa.int32()), ("qty", pa.int64())]),
                        primary_key=["order", "line"])
        db.append("lines", {"order": [1, 1], "line": pa.array([1, 2], pa.int32()), "qty": [5, 6]})
        db.create_table("skus", pa.schema([("sku", pa.string()), ("price", pa.float64())]), primary_key=["sku"])
        db.append("skus", {"sku": ["a-1", "b-2"], "price": [1.0, 2.0]})
        db.append("log", {"msg": ["hello"]})
        for table in db.tables():
            db.read(table)
        yield db, path
    finally:
        db.close()


def rejected(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
             call: Callable[[udr.Lake], object], *names: str) -> str:
    """Run `call`, expect KeyViolation naming each of `names`, and check the lake is byte-identical."""
    db, path = seeded
    before = disk_state(path)
    head = db.resolve(None)
    with pytest.raises(udr.KeyViolation) as info:
        call(db)
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    assert db.resolve(None) == head
    assert disk_state(path) == before, "a rejected keyed write changed the lake on disk"
    return message


BIG_DUPLICATE = pa.table({
    "id": np.concatenate([np.arange(100, 60_100), [100]]).astype(np.int64),
    "status": pa.array(["x"] * 60_001),
    "amount": np.zeros(60_001),
})


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda db: db.append("orders", orders((7, "a", 1.0), (7, "b", 2.0))), ["'orders'", "'id': 7"]),
        (lambda db: db.upsert("orders", orders((7, "a", 1.0), (7, "b", 2.0))), ["'orders'", "'id': 7"]),
        (lambda db: db.overwrite("orders", orders((7, "a", 1.0), (7, "b", 2.0))), ["'orders'", "'id': 7"]),
        (lambda db: db.upsert("orders", orders((1, "a", 1.0), (1, "a", 1.0))), ["'orders'", "'id': 1"]),
        (lambda db: db.upsert("orders", BIG_DUPLICATE), ["'orders'", "'id': 100"]),
        (lambda db: db.upsert("orders", orders((None, "a", 1.0))), ["'orders'", "null"]),
        (lambda db: db.append("orders", orders((8, "a", 1.0), (None, "b", 1.0))), ["'orders'", "null"]),
        (lambda db: db.overwrite("orders", orders((None, "a", 1.0))), ["'orders'", "null"]),
        (lambda db: db.append("orders", orders((2, "changed", 1.0))), ["'orders'", "'id': 2", "upsert"]),
        (lambda db: db.upsert("log", {"msg": ["x"]}), ["'log'", "primary key"]),
        (lambda db: db.delete("log", keys={"msg": ["hello"]}), ["'log'", "primary key"]),
        (lambda db: db.delete("orders", keys={"status": ["new"]}), ["'orders'", "id"]),
        (lambda db: db.upsert("lines", {"order": [1, 1], "line": pa.array([3, 3], pa.int32()), "qty": [1, 2]}),
         ["'lines'", "'order': 1", "'line': 3"]),
        (lambda db: db.upsert("lines", {"order": [1], "line": pa.array([None], pa.int32()), "qty": [1]}),
         ["'lines'", "null", "'line'"]),
        (lambda db: db.upsert("skus", {"sku": ["c-3", "c-3"], "price": [1.0, 2.0]}), ["'skus'", "'c-3'"]),
        (lambda db: db.upsert("skus", {"sku": pa.array([None], pa.string()), "price": [1.0]}), ["'skus'", "null"]),
    ],
    ids=["append dup", "upsert dup", "overwrite dup", "upsert identical dup", "big upsert dup", "upsert null",
         "append null", "overwrite null", "append existing", "upsert unkeyed", "delete keys unkeyed",
         "delete keys without key column", "composite dup", "composite null", "string dup", "string null"],
)
def test_key_violations_name_the_key_and_change_nothing_on_disk(
    seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState], call: Callable[[udr.Lake], object],
    names: list[str],
) -> None:
    rejected(seeded, disk_state, call, *names)


def test_a_key_violation_inside_a_transaction_leaves_its_other_writes_staged(keyed: udr.Lake) -> None:
    with keyed.transaction() as tx:
        tx.upsert("orders", orders((4, "new", 40.0)))
        with pytest.raises(udr.KeyViolation):
            tx.upsert("orders", orders((5, "a", 1.0), (5, "b", 1.0)))
        assert sorted(tx.read("orders").column("id").to_pylist()) == [1, 2, 3, 4]
    assert sorted(keyed.read("orders").column("id").to_pylist()) == [1, 2, 3, 4]


def test_a_null_key_violation_names_the_key_column(keyed: udr.Lake) -> None:
    with pytest.raises(udr.KeyViolation, match="'id'"):
        keyed.upsert("orders", orders((None, "a", 1.0)))


def test_appending_an_existing_identical_row_names_the_key(keyed: udr.Lake) -> None:
    with pytest.raises(udr.KeyViolation, match="'id': 1"):
        keyed.append("orders", orders((1, "new", 10.0)))


def test_a_table_keeps_its_primary_key_across_versions_and_branches(keyed: udr.Lake) -> None:
    assert keyed.primary_key("orders") == ["id"]
    assert keyed.primary_key("orders", at="main~1") == ["id"]
    keyed.create_branch("b")
    assert keyed.primary_key("orders", branch="b") == ["id"]
    keyed.append("plain", {"x": [1]})
    assert keyed.primary_key("plain") is None


# -- upsert -----------------------------------------------------------------------------------------------


def test_upsert_inserts_new_keys_and_replaces_existing_rows(keyed: udr.Lake) -> None:
    commit = keyed.upsert("orders", orders((2, "paid", 21.0), (4, "new", 40.0)))
    assert commit.tables == {"orders": udr.TableChange(inserted=1, updated=1, deleted=0)}
    assert rows(keyed.read("orders")) == [
        {"id": 1, "status": "new", "amount": 10.0}, {"id": 2, "status": "paid", "amount": 21.0},
        {"id": 3, "status": "paid", "amount": 30.0}, {"id": 4, "status": "new", "amount": 40.0},
    ]
    assert keyed.row_count("orders") == 4


def test_upserting_identical_rows_is_no_change_and_writes_no_commit(keyed: udr.Lake) -> None:
    keyed.upsert("orders", orders((5, None, math.nan), (6, "", -0.0)))
    head = keyed.resolve(None)
    again = keyed.upsert("orders", orders((5, None, math.nan), (6, "", 0.0), (1, "new", 10.0)))
    assert again.id == head
    assert keyed.resolve(None) == head


def test_an_upsert_mixing_identical_and_changed_rows_counts_only_the_changes(keyed: udr.Lake) -> None:
    commit = keyed.upsert("orders", orders((1, "new", 10.0), (2, None, 20.0), (3, "paid", math.nan)))
    assert commit.tables["orders"] == udr.TableChange(inserted=0, updated=2, deleted=0)
    assert changed(keyed.changes("orders", since="main~1")) == [
        (2, "update_before"), (2, "update_after"), (3, "update_before"), (3, "update_after")]


def test_upsert_by_composite_and_string_keys(db: udr.Lake) -> None:
    db.create_table("lines", pa.schema([("o", pa.int64()), ("l", pa.string()), ("q", pa.int64())]),
                    primary_key=["o", "l"])
    db.append("lines", {"o": [1, 1, 2], "l": ["a", "b", "a"], "q": [1, 2, 3]})
    commit = db.upsert("lines", {"o": [1, 2, 2], "l": ["b", "a", "b"], "q": [20, 3, 4]})
    assert commit.tables["lines"] == udr.TableChange(inserted=1, updated=1, deleted=0)
    assert rows(db.read("lines"), "o", "l") == [
        {"o": 1, "l": "a", "q": 1}, {"o": 1, "l": "b", "q": 20}, {"o": 2, "l": "a", "q": 3}, {"o": 2, "l": "b", "q": 4}]
    db.delete("lines", keys={"o": [1, 2], "l": ["a", "zz"]})
    assert [(r["o"], r["l"]) for r in rows(db.read("lines"), "o", "l")] == [(1, "b"), (2, "a"), (2, "b")]
    assert db.history("lines", key={"o": 1, "l": "b"}).column("q").to_pylist() == [2, 2, 20]


def test_upsert_accepts_a_reader_pandas_and_polars(keyed: udr.Lake) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    keyed.upsert("orders", pa.RecordBatchReader.from_batches(ORDERS, orders((1, "r", 1.0)).to_batches()))
    keyed.upsert("orders", pd.DataFrame({"id": [2], "status": ["pd"], "amount": [2.0]}))
    keyed.upsert("orders", pl.DataFrame({"id": [3], "status": ["pl"], "amount": [3.0]}))
    assert keyed.read("orders").sort_by("id").column("status").to_pylist() == ["r", "pd", "pl"]


# -- keyed overwrite ---------------------------------------------------------------------------------------


def test_keyed_overwrite_counts_exactly_inserted_updated_and_deleted_rows(keyed: udr.Lake) -> None:
    commit = keyed.overwrite("orders", orders((1, "new", 10.0), (2, "void", 20.0), (9, "new", 90.0)))
    assert commit.tables == {"orders": udr.TableChange(inserted=1, updated=1, deleted=1)}
    assert changed(keyed.changes("orders", since="main~1")) == [
        (3, "delete"), (2, "update_before"), (2, "update_after"), (9, "insert")]
    head = keyed.resolve(None)
    assert keyed.overwrite("orders", orders((9, "new", 90.0), (2, "void", 20.0), (1, "new", 10.0))).id == head


def _keyed_big(db: udr.Lake, big: pa.Table) -> pa.Table:
    """Load `big` into a new table "big" keyed by column a; return it."""
    db.create_table("big", big.schema, primary_key=["a"])
    db.append("big", big)
    return big


def test_keyed_overwrite_of_big_data_stores_only_the_difference(
    db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table], chunk_files: Callable[[Path], list[Path]]
) -> None:
    big = _keyed_big(db, make_big(1))
    files = chunk_files(lake_path)
    assert len(files) >= 1
    stored = db.stats().stored_bytes
    keys = big.column("a").to_pylist()
    changed_row = pc.equal(big.column("a"), keys[10])
    new = big.filter(pc.not_equal(big.column("a"), keys[20]))  # one row gone
    new = new.set_column(1, "b", pc.if_else(pc.equal(new.column("a"), keys[10]), 7, new.column("b")))  # one updated
    new = pa.concat_tables([new, pa.table({"a": [-1], "b": [0], "c": [0], "d": [0]}, schema=big.schema)])  # one new
    assert pc.sum(changed_row).as_py() == 1
    commit = db.overwrite("big", new)
    assert commit.tables == {"big": udr.TableChange(inserted=1, updated=1, deleted=1)}
    assert chunk_files(lake_path) == files, "a keyed overwrite rewrote the data"
    assert db.stats().stored_bytes - stored < 10_000
    assert db.read("big").sort_by("a").equals(new.sort_by("a"))
    assert db.read("big", at="main~1").sort_by("a").equals(big.sort_by("a"))


def test_keyed_overwrite_can_evolve_the_schema(keyed: udr.Lake) -> None:
    data = orders((1, "new", 10.0), (2, "new", 20.0)).append_column("note", pa.array(["n1", None]))
    commit = keyed.overwrite("orders", data, evolve=True)
    assert commit.tables["orders"] == udr.TableChange(inserted=0, updated=1, deleted=1)
    assert keyed.read("orders").sort_by("id").column("note").to_pylist() == ["n1", None]


# -- deletes ----------------------------------------------------------------------------------------------


def test_delete_by_predicate_and_by_keys_counts_and_returns_the_rows_deleted(keyed: udr.Lake) -> None:
    with keyed.transaction() as tx:
        assert tx.delete("orders", "status = 'new' AND amount > 15") == 1
    assert tx.committed is not None and tx.committed.tables == {"orders": udr.TableChange(deleted=1)}
    with keyed.transaction() as tx:
        assert tx.delete("orders", keys=pa.table({"id": [3, 3, 99], "other": ["x", "y", "z"]})) == 1
    assert tx.committed is not None and tx.committed.tables == {"orders": udr.TableChange(deleted=1)}
    assert keyed.read("orders").column("id").to_pylist() == [1]
    head = keyed.resolve(None)
    assert keyed.delete("orders", keys={"id": [42]}).id == head, "deleting nothing wrote a commit"
    assert keyed.delete("orders", "amount IS NULL").id == head


def test_deletes_write_deletion_vectors_not_new_data_files(
    db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table], chunk_files: Callable[[Path], list[Path]]
) -> None:
    big = _keyed_big(db, make_big(2))
    files = chunk_files(lake_path)
    stored = db.stats().stored_bytes
    victims = big.column("a").to_pylist()[:500]
    db.delete("big", keys={"a": victims})
    gone = db.delete("big", "b % 2 = 0")
    assert chunk_files(lake_path) == files
    assert db.stats().stored_bytes == stored, "a delete stored new chunk data"
    expected = big.filter(pc.invert(pc.is_in(big.column("a"), pa.array(victims))))
    expected = expected.filter(pc.not_equal(pc.bit_wise_and(expected.column("b"), 1), 0))
    assert gone.tables["big"].deleted == big.num_rows - 500 - expected.num_rows
    assert db.read("big").sort_by("a").equals(expected.sort_by("a"))
    assert db.read("big", at="main~2").num_rows == big.num_rows, "time travel lost deleted rows"
    assert db.verify().ok


def test_delete_by_predicate_sees_rows_staged_in_the_same_transaction(keyed: udr.Lake) -> None:
    with keyed.transaction() as tx:
        tx.upsert("orders", orders((4, "new", 40.0)))
        assert tx.delete("orders", "id = 4 OR id = 1") == 2
    assert keyed.read("orders").sort_by("id").column("id").to_pylist() == [2, 3]
    assert tx.committed is not None and tx.committed.tables["orders"] == udr.TableChange(deleted=1)
    assert changed(keyed.changes("orders", since="main~1")) == [(1, "delete")]


def test_deleting_a_row_updated_in_the_same_transaction_counts_one_delete(keyed: udr.Lake) -> None:
    with keyed.transaction() as tx:
        tx.upsert("orders", orders((1, "changed", 10.0)))
        tx.delete("orders", keys={"id": [1]})
    assert changed(keyed.changes("orders", since="main~1")) == [(1, "delete")]
    assert tx.committed is not None and tx.committed.tables["orders"] == udr.TableChange(deleted=1)


def test_deleting_an_empty_key_table_deletes_nothing(keyed: udr.Lake) -> None:
    head = keyed.resolve(None)
    assert keyed.delete("orders", keys=pa.table({"id": pa.array([], pa.int64())})).id == head


def test_commit_counts_of_a_multi_write_transaction_are_the_net_change(keyed: udr.Lake) -> None:
    with keyed.transaction() as tx:
        tx.upsert("orders", orders((5, "new", 1.0), (1, "x", 1.0)))
        tx.upsert("orders", orders((5, "paid", 1.0), (1, "new", 10.0)))
        tx.delete("orders", keys={"id": [2]})
        tx.upsert("orders", orders((2, "back", 2.0)))
    assert tx.committed is not None
    feed = keyed.changes("orders", since="main~1")
    assert changed(feed) == [(2, "update_before"), (2, "update_after"), (5, "insert")]
    assert tx.committed.tables["orders"] == udr.TableChange(inserted=1, updated=1, deleted=0)


@pytest.mark.parametrize("again", ["append", "upsert"])
def test_rows_deleted_and_written_again_in_one_transaction_are_kept(keyed: udr.Lake, again: str) -> None:
    with keyed.transaction() as tx:
        tx.append("orders", orders((6, "new", 6.0)))
        tx.delete("orders", keys={"id": [6]})
        getattr(tx, again)("orders", orders((6, "new", 6.0)))
        assert 6 in tx.read("orders").column("id").to_pylist()
    assert 6 in keyed.read("orders").column("id").to_pylist()


def test_unkeyed_rows_deleted_and_appended_again_in_one_transaction_are_kept(db: udr.Lake) -> None:
    db.append("log", {"x": [0]})
    with db.transaction() as tx:
        tx.append("log", {"x": [6]})
        tx.delete("log", "x = 6")
        tx.append("log", {"x": [6]})
    assert sorted(db.read("log").column("x").to_pylist()) == [0, 6]


def test_the_change_feed_of_a_multi_write_transaction_is_its_net_change(keyed: udr.Lake) -> None:
    with keyed.transaction() as tx:
        tx.upsert("orders", orders((5, "new", 1.0), (1, "x", 1.0)))
        tx.upsert("orders", orders((5, "paid", 1.0), (1, "new", 10.0)))
        tx.delete("orders", keys={"id": [3]})
    feed = keyed.changes("orders", since="main~1")
    assert [(r["id"], r["status"], r["_change"]) for r in feed.to_pylist()] == [
        (3, "paid", "delete"), (5, "paid", "insert")]


# -- compaction ---------------------------------------------------------------------------------------------


def fragmented(db: udr.Lake, make_big: Callable[..., pa.Table]) -> pa.Table:
    """Build a keyed table of big and small fragments with deletion vectors; return its expected rows."""
    big = make_big(3)
    db.create_table("t", big.schema, primary_key=["a"])
    db.append("t", big)
    for i in range(5):
        db.upsert("t", pa.table({"a": [i, 10 + i], "b": [i, i], "c": [0, 1], "d": [None, 5]}, schema=big.schema))
    db.delete("t", keys={"a": [*big.column("a").to_pylist()[:100], 3]})
    db.delete("t", "c = 1 AND a < 12")
    db.upsert("t", pa.table({"a": [0], "b": [99], "c": [0], "d": [0]}, schema=big.schema))
    return db.read("t")


QUERIES = [
    "SELECT count(*), sum(b), min(a), max(a), count(d) FROM t",
    "SELECT a, b, c, d FROM t WHERE a < 20 ORDER BY a",
    "SELECT c, count(*) FROM t GROUP BY c ORDER BY c",
]


def test_compaction_changes_no_row_no_answer_and_no_change_feed(db: udr.Lake,
                                                               make_big: Callable[..., pa.Table]) -> None:
    before_rows = fragmented(db, make_big)
    before = db.resolve(None)
    answers = [db.sql(q).fetchall() for q in QUERIES]
    history = db.history("t", key={"a": 0})
    commit = db.compact("t")
    assert commit.tables == {"t": udr.TableChange()}
    assert commit.parents == (before,)
    assert db.read("t").sort_by("a").equals(before_rows.sort_by("a"))
    assert [db.sql(q).fetchall() for q in QUERIES] == answers
    assert db.changes("t", since=before).num_rows == 0
    assert db.changes("t", since=before, until=commit.id).num_rows == 0
    assert db.diff("t", before, commit.id).num_rows == 0
    assert db.diff_summary(before, commit.id) == {}
    assert db.history("t", key={"a": 0}).equals(history)
    assert db.row_count("t") == before_rows.num_rows
    # Later changes still flow through the feed normally.
    db.upsert("t", pa.table({"a": [0], "b": [100], "c": [0], "d": [0]}, schema=before_rows.schema))
    assert db.changes("t", since=commit.id).column("_change").to_pylist() == ["update_before", "update_after"]
    assert db.verify().ok


def test_compaction_then_gc_keeps_every_old_version_readable(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    fragmented(db, make_big)
    versions = {c.id: db.read("t", at=c.id).sort_by("a") for c in db.log() if "t" in db.tables(at=c.id)}
    db.compact("t")
    db.gc()
    for cid, expected in versions.items():
        assert db.read("t", at=cid).sort_by("a").equals(expected)
    assert db.verify().ok


# -- the change feed ------------------------------------------------------------------------------------------


def test_changes_have_the_table_columns_plus_change_commit_id_seq_and_time(keyed: udr.Lake) -> None:
    feed = keyed.changes("orders")
    assert feed.column_names == ORDERS.names + CHANGE_COLUMNS
    assert feed.schema.field("_change").type == pa.string()
    assert feed.schema.field("_commit_id").type == pa.string()
    assert feed.schema.field("_commit_seq").type == pa.int64()
    assert feed.schema.field("_commit_time").type == pa.timestamp("us", tz="UTC")
    head = keyed.commit_info("main")
    assert set(feed.column("_commit_id").to_pylist()) == {head.id}
    assert set(feed.column("_commit_seq").to_pylist()) == {head.seq}
    assert set(feed.column("_commit_time").to_pylist()) == {head.time}


def test_changes_come_in_commit_order_with_updates_as_before_after_pairs(keyed: udr.Lake) -> None:
    first = keyed.commit_info("main")
    c2 = keyed.upsert("orders", orders((1, "paid", 10.0), (4, "new", 40.0)))
    c3 = keyed.delete("orders", "id = 2")
    c4 = keyed.overwrite("orders", orders((1, "shipped", 10.0), (3, "paid", 30.0), (4, "new", 40.0)))
    feed = keyed.changes("orders", since=first.id)
    assert [(r["id"], r["status"], r["_change"], r["_commit_id"]) for r in feed.to_pylist()] == [
        (1, "new", "update_before", c2.id), (1, "paid", "update_after", c2.id), (4, "new", "insert", c2.id),
        (2, "new", "delete", c3.id),
        (1, "paid", "update_before", c4.id), (1, "shipped", "update_after", c4.id),
    ]
    assert keyed.changes("orders", since=c2.id, until=c3.id).column("_commit_id").to_pylist() == [c3.id]
    assert keyed.changes("orders", until=first.id).num_rows == 3
    assert keyed.changes("orders", since=c4.id).num_rows == 0


def test_changes_follow_the_branch_asked_for(keyed: udr.Lake) -> None:
    keyed.create_branch("dev")
    keyed.upsert("orders", orders((7, "dev", 7.0)), branch="dev")
    assert changed(keyed.changes("orders", since="main", branch="dev")) == [(7, "insert")]
    assert keyed.changes("orders", since="main").num_rows == 0


def test_changes_since_a_commit_off_the_first_parent_line_is_ref_not_found(keyed: udr.Lake) -> None:
    keyed.create_branch("dev")
    off = keyed.upsert("orders", orders((7, "dev", 7.0)), branch="dev")
    with pytest.raises(udr.RefNotFound):
        keyed.changes("orders", since=off.id)
    with pytest.raises(udr.TableNotFound, match="ordrs"):
        keyed.changes("ordrs")


def test_sql_table_at_a_range_is_the_change_table(keyed: udr.Lake) -> None:
    keyed.tag("v1")
    keyed.upsert("orders", orders((1, "paid", 10.0), (5, "new", 50.0)))
    keyed.delete("orders", keys={"id": [2]})
    keyed.tag("v2")
    keyed.upsert("orders", orders((3, "void", 30.0)))
    expected = keyed.changes("orders", since="v1", until="v2")
    assert expected.num_rows == 4
    via_sql = keyed.query('SELECT * FROM "orders@v1..v2"')
    assert via_sql.column_names == expected.column_names
    assert via_sql.to_pylist() == expected.to_pylist()
    assert keyed.query('SELECT * FROM "orders@v1..main"').to_pylist() == keyed.changes("orders", since="v1").to_pylist()
    counts = keyed.sql('SELECT _change, count(*) FROM "orders@v1..v2" GROUP BY ALL ORDER BY ALL').fetchall()
    assert counts == [("delete", 1), ("insert", 1), ("update_after", 1), ("update_before", 1)]


def test_unkeyed_tables_have_a_change_feed_of_inserts_and_deletes(db: udr.Lake) -> None:
    db.append("log", {"x": [1, 2, 2]})
    db.delete("log", "x = 2")
    db.overwrite("log", {"x": [1, 3]})
    assert [(r["x"], r["_change"]) for r in db.changes("log").to_pylist()] == [
        (1, "insert"), (2, "insert"), (2, "insert"), (2, "delete"), (2, "delete"), (3, "insert")]


def test_a_dropped_and_recreated_table_keeps_its_feed_and_row_history(keyed: udr.Lake) -> None:
    keyed.drop_table("orders")
    feed = keyed.changes("orders")
    assert [(r["id"], r["_change"]) for r in feed.to_pylist()][-3:] == [(1, "delete"), (2, "delete"), (3, "delete")]
    keyed.create_table("orders", ORDERS, primary_key=["id"])
    keyed.append("orders", orders((1, "reborn", 1.0)))
    history = keyed.history("orders", key={"id": 1})
    assert [(r["status"], r["_change"]) for r in history.to_pylist()] == [
        ("new", "insert"), ("new", "delete"), ("reborn", "insert")]


def test_a_table_too_wide_for_a_before_image_still_has_an_exact_feed(db: udr.Lake) -> None:
    columns = {"id": [1, 2]} | {f"c{i}": [0, 0] for i in range(70)}
    db.create_table("wide", pa.table(columns).schema, primary_key=["id"])
    db.append("wide", columns)
    commit = db.upsert("wide", {"id": [1, 3]} | {f"c{i}": [int(i == 65), 0] for i in range(70)})
    assert commit.tables["wide"] == udr.TableChange(inserted=1, updated=1)
    feed = db.changes("wide", since="main~1")
    assert [(r["id"], r["c65"], r["_change"]) for r in feed.to_pylist()] == [
        (1, 0, "update_before"), (1, 1, "update_after"), (3, 0, "insert")]
    assert db.history("wide", key={"id": 1}).column("c65").to_pylist() == [0, 0, 1]


# -- row history and diffs -----------------------------------------------------------------------------------


def test_history_lists_every_version_of_one_row_oldest_first_with_who_and_why(keyed: udr.Lake) -> None:
    load = keyed.commit_info("main")
    pay = keyed.upsert("orders", orders((2, "paid", 20.0)), author="ann", message="pay")
    keyed.upsert("orders", orders((1, "paid", 10.0)), message="other row")
    gone = keyed.delete("orders", "id = 2", author="bob", message="cancel")
    back = keyed.upsert("orders", orders((2, "again", 22.0)), author="cy", message="reopen")
    history = keyed.history("orders", key={"id": 2})
    assert history.column_names == [*ORDERS.names, "_change", "_commit_id", "_commit_time", "_author", "_message",
                                    "_metadata"]
    assert [(r["status"], r["_change"], r["_commit_id"], r["_author"], r["_message"]) for r in history.to_pylist()] == [
        ("new", "insert", load.id, load.author, "load"),
        ("new", "update_before", pay.id, "ann", "pay"),
        ("paid", "update_after", pay.id, "ann", "pay"),
        ("paid", "delete", gone.id, "bob", "cancel"),
        ("again", "insert", back.id, "cy", "reopen"),
    ]
    assert history.column("_commit_time").to_pylist() == [load.time, pay.time, pay.time, gone.time, back.time]
    assert keyed.history("orders", key={"id": 404}).num_rows == 0


def test_history_needs_exactly_the_key_columns(keyed: udr.Lake) -> None:
    with pytest.raises(udr.UsageError, match="id"):
        keyed.history("orders", key={"status": "new"})
    with pytest.raises(udr.UsageError):
        keyed.history("orders", key={"id": 1, "status": "new"})


def test_history_of_a_branch_includes_its_own_commits(keyed: udr.Lake) -> None:
    keyed.create_branch("dev")
    keyed.upsert("orders", orders((1, "dev", 1.0)), branch="dev")
    assert keyed.history("orders", key={"id": 1}, branch="dev").column("status").to_pylist() == ["new", "new", "dev"]
    assert keyed.history("orders", key={"id": 1}).column("status").to_pylist() == ["new"]


def test_diff_gives_net_changes_between_two_refs(keyed: udr.Lake) -> None:
    start = keyed.resolve(None)
    keyed.upsert("orders", orders((4, "new", 40.0), (1, "paid", 10.0)))
    keyed.upsert("orders", orders((4, "paid", 41.0), (1, "new", 10.0)))  # 1 is back as it was
    keyed.delete("orders", keys={"id": [3]})
    keyed.append("orders", orders((3, "paid", 30.0)))  # 3 deleted and re-added identically
    keyed.delete("orders", keys={"id": [2]})
    net = keyed.diff("orders", start)
    assert [(r["id"], r["status"], r["_change"]) for r in net.to_pylist()] == [(2, "new", "delete"),
                                                                              (4, "paid", "insert")]
    assert set(net.column("_commit_id").to_pylist()) == {keyed.resolve(None)}
    back = keyed.diff("orders", "main", start)
    assert [(r["id"], r["_change"]) for r in back.to_pylist()] == [(4, "delete"), (2, "insert")]
    assert keyed.diff_summary(start) == {"orders": udr.TableChange(inserted=1, updated=0, deleted=1)}
    assert keyed.diff_summary(start, start) == {}


# -- key types and values that Arrow and Parquet treat specially (found by a QA pass) ----------------------


@pytest.mark.parametrize("kind", [pa.timestamp("s"), pa.date64(), pa.time32("s"), pa.timestamp("s", tz="UTC")],
                         ids=str)
def test_changes_of_keys_parquet_stores_wider_read_back(tmp_path: Path, kind: pa.DataType) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([("k", kind), ("v", pa.int64())]), primary_key=["k"])
        raw = [86_400_000, 2 * 86_400_000] if kind == pa.date64() else [1_000, 2_000]  # date64: whole days
        keys = pa.array(raw, pa.int32() if kind == pa.time32("s") else pa.int64())
        db.upsert("t", pa.table({"k": keys.cast(kind), "v": [1, 2]}))
        db.upsert("t", pa.table({"k": keys.cast(kind), "v": [1, 3]}))
        assert db.changes("t").column("_change").to_pylist() == ["insert", "insert", "update_before", "update_after"]
        assert db.history("t", key={"k": keys.cast(kind)[1].as_py()}).column("_change").to_pylist() == [
            "insert", "update_before", "update_after"]


@pytest.mark.parametrize("key", [pa.array(["a", "b"]).dictionary_encode(), pa.array(["a", "b"], pa.string_view())],
                         ids=["dictionary", "string_view"])
def test_keys_arrow_cannot_count_are_checked_by_duckdb(tmp_path: Path, key: pa.Array) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([("k", key.type), ("v", pa.int64())]), primary_key=["k"])
        db.append("t", pa.table({"k": key, "v": [1, 2]}))
        with pytest.raises(udr.KeyViolation, match="duplicate"):
            db.append("t", pa.table({"k": pa.array(["c", "c"]).cast(key.type), "v": [3, 4]}))
        assert db.row_count("t") == 2


@pytest.mark.parametrize(("kind", "value"), [(pa.uint64(), 2**64 - 1), (pa.timestamp("ns"), 1_000_000_123)],
                         ids=["uint64 max", "nanoseconds"])
def test_history_finds_keys_that_inferring_a_type_would_change(tmp_path: Path, kind: pa.DataType,
                                                                value: int) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([("k", kind), ("v", pa.int64())]), primary_key=["k"])
        db.append("t", pa.table({"k": pa.array([value], pa.uint64() if kind == pa.uint64() else pa.int64()).cast(kind),
                                 "v": [1]}))
        key = db.read("t").column("k")[0].as_py()
        assert db.history("t", key={"k": key}).num_rows == 1


def test_an_open_ended_sql_range_follows_the_branch_queried(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]), primary_key=["k"])
        first = db.append("t", {"k": [1, 2], "v": [1, 2]})
        db.create_branch("dev")
        db.upsert("t", {"k": [1, 3], "v": [10, 3]}, branch="dev")
        ranged = db.query(f'SELECT * FROM "t@{first.id}.."', branch="dev")
        assert ranged.num_rows == db.changes("t", since=first.id, branch="dev").num_rows == 3
        assert db.query(f'SELECT * FROM "t@{first.id}.."').num_rows == 0
