"""Automatic rebase: a transaction whose branch moved is re-applied on the new head unless it really conflicts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import udr

KV = pa.schema([pa.field("k", pa.int64(), nullable=False), ("a", pa.int64()), ("b", pa.string())])


@pytest.fixture
def db(tmp_path: Path) -> Iterator[udr.Lake]:
    with udr.open(tmp_path / "lake") as lake:
        lake.create_table("kv", KV, primary_key=["k"])
        lake.append("kv", {"k": [1, 2, 3], "a": [10, 20, 30], "b": ["x", "y", "z"]})
        yield lake


def rows(db: udr.Lake, table: str = "kv") -> list[dict[str, object]]:
    return sorted(db.read(table).to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def test_upserts_of_different_keys_both_commit_in_a_line(db: udr.Lake) -> None:
    began = db.resolve("main")
    late = db.transaction(message="late")
    late.upsert("kv", {"k": [1], "a": [11], "b": ["x"]})
    won = db.upsert("kv", {"k": [2, 4], "a": [21, 40], "b": ["y", "w"]})
    commit = late.commit()
    assert commit.parents == (won.id,)
    assert db.log(limit=3)[2].id == began
    assert rows(db) == [{"k": 1, "a": 11, "b": "x"}, {"k": 2, "a": 21, "b": "y"}, {"k": 3, "a": 30, "b": "z"},
                        {"k": 4, "a": 40, "b": "w"}]
    assert (commit.tables["kv"].inserted, commit.tables["kv"].updated) == (0, 1)


def test_different_cells_of_one_key_merge(db: udr.Lake) -> None:
    late = db.transaction()
    late.upsert("kv", {"k": [1], "a": [11], "b": ["x"]})
    db.upsert("kv", {"k": [1], "a": [10], "b": ["changed"]})
    late.commit()
    kv = db.read("kv")
    assert kv.filter(pa.compute.equal(kv["k"], 1)).to_pylist() == [{"k": 1, "a": 11, "b": "changed"}]
    assert db.row_count("kv") == 3


def test_the_same_cell_set_to_different_values_conflicts_and_writes_nothing(db: udr.Lake) -> None:
    late = db.transaction()
    late.upsert("kv", {"k": [2], "a": [99], "b": ["y"]})
    won = db.upsert("kv", {"k": [2], "a": [77], "b": ["y"]})
    with pytest.raises(udr.ConflictError) as info:
        late.commit()
    message = str(info.value)
    assert "'kv'" in message and "2" in message and "'a'" in message and won.id[:10] in message
    assert info.value.retryable
    assert db.resolve("main") == won.id
    assert {r["k"]: r["a"] for r in rows(db)} == {1: 10, 2: 77, 3: 30}


def test_the_same_cell_set_to_the_same_value_is_no_conflict(db: udr.Lake) -> None:
    late = db.transaction()
    late.upsert("kv", {"k": [2], "a": [77], "b": ["y"]})
    db.upsert("kv", {"k": [2], "a": [77], "b": ["y"]})
    late.commit()
    assert {r["k"]: r["a"] for r in rows(db)} == {1: 10, 2: 77, 3: 30}


def test_a_row_deleted_on_one_side_and_changed_on_the_other_conflicts(db: udr.Lake) -> None:
    late = db.transaction()
    late.delete("kv", keys={"k": [3]})
    db.upsert("kv", {"k": [3], "a": [31], "b": ["z"]})
    with pytest.raises(udr.ConflictError, match=r"'kv'.*3"):
        late.commit()
    assert db.row_count("kv") == 3


def test_deletes_of_different_keys_both_apply(db: udr.Lake) -> None:
    late = db.transaction()
    late.delete("kv", keys={"k": [1]})
    db.delete("kv", keys={"k": [3]})
    late.commit()
    assert [r["k"] for r in rows(db)] == [2]


def test_appends_to_a_table_without_key_never_conflict_even_when_identical(db: udr.Lake) -> None:
    db.append("ev", {"x": [1, 2]})
    txs = [db.transaction() for _ in range(3)]
    for tx in txs:
        tx.append("ev", {"x": [7, 8]})
    for tx in txs:
        tx.commit()
    assert sorted(db.read("ev")["x"].to_pylist()) == [1, 2, 7, 7, 7, 8, 8, 8]
    assert db.verify().ok


def test_a_multiset_delete_and_a_concurrent_append_both_apply(db: udr.Lake) -> None:
    db.append("ev", {"x": [1, 2, 3]})
    late = db.transaction()
    assert late.delete("ev", "x = 2") == 1
    db.append("ev", {"x": [2]})
    db.delete("ev", "x = 3")
    late.commit()
    assert sorted(db.read("ev")["x"].to_pylist()) == [1, 2]


def test_both_sides_deleting_one_stored_row_conflicts(db: udr.Lake) -> None:
    db.append("ev", {"x": [1, 2, 3]})
    late = db.transaction()
    late.delete("ev", "x = 2")
    db.delete("ev", "x >= 2")
    with pytest.raises(udr.ConflictError, match="ev"):
        late.commit()
    assert db.read("ev")["x"].to_pylist() == [1]


def test_a_keyed_overwrite_and_a_concurrent_insert_of_another_key_merge(db: udr.Lake) -> None:
    late = db.transaction()
    late.upsert("kv", {"k": [9], "a": [9], "b": ["n"]})
    db.overwrite("kv", {"k": [1], "a": [1], "b": ["o"]})
    late.commit()
    assert rows(db) == [{"k": 1, "a": 1, "b": "o"}, {"k": 9, "a": 9, "b": "n"}]


@pytest.mark.parametrize("change", ["drop", "add_column", "create"])
def test_a_reshaped_table_conflicts_with_any_concurrent_change(db: udr.Lake, change: str) -> None:
    late = db.transaction()
    late.upsert("kv", {"k": [9], "a": [9], "b": ["n"]})
    with db.transaction() as tx:
        if change == "drop":
            tx.drop_table("kv")
        elif change == "add_column":
            tx.add_column("kv", "c", pa.int64())
        else:
            tx.drop_table("kv")
            tx.create_table("kv", KV, primary_key=["k"])
    head = db.resolve("main")
    with pytest.raises(udr.ConflictError, match="kv"):
        late.commit()
    assert db.resolve("main") == head


def test_serializable_refuses_write_skew_that_snapshot_allows(db: udr.Lake) -> None:
    db.append("on_call", {"doctor": ["alice", "bob"], "on": [True, True]})

    def go_off(name: str, isolation: str) -> udr.Transaction:
        tx = db.transaction(isolation=isolation)  # type: ignore[arg-type]
        on = tx.read("on_call").to_pylist()
        assert sum(r["on"] for r in on) == 2  # "someone else is still on call"
        tx.delete("on_call", f"doctor = '{name}'")
        return tx

    alice, bob = go_off("alice", "snapshot"), go_off("bob", "snapshot")
    alice.commit()
    bob.commit()
    assert db.row_count("on_call") == 0  # write skew: nobody is on call

    db.append("on_call", {"doctor": ["alice", "bob"], "on": [True, True]})
    alice, bob = go_off("alice", "serializable"), go_off("bob", "serializable")
    alice.commit()
    with pytest.raises(udr.ConflictError, match="serializable"):
        bob.commit()
    assert db.read("on_call")["doctor"].to_pylist() == ["bob"]


def test_serializable_sees_tables_read_through_sql(db: udr.Lake) -> None:
    db.append("limits", {"k": [1], "cap": [100]})
    tx = db.transaction(isolation="serializable")
    assert tx.sql("select cap from limits").arrow().read_all()["cap"].to_pylist() == [100]
    tx.upsert("kv", {"k": [1], "a": [100], "b": ["x"]})
    db.append("limits", {"k": [2], "cap": [5]})
    with pytest.raises(udr.ConflictError, match="limits"):
        tx.commit()


def test_an_unknown_isolation_level_is_a_usage_error(db: udr.Lake) -> None:
    with pytest.raises(udr.UsageError, match="serializable"):
        db.transaction(isolation="repeatable read")  # type: ignore[arg-type]


def test_random_concurrent_keyed_writes_match_a_cell_model(db: udr.Lake) -> None:
    """Transactions begun on one head write random cells and commit in random order: each commits exactly
    when no earlier one of them set one of its cells to another value or deleted a row it changed."""
    rng = random.Random(7)
    for round_ in range(12):
        base = {r["k"]: dict(r) for r in db.read("kv").to_pylist()}
        model = {k: dict(r) for k, r in base.items()}
        touched: dict[tuple[int, str], object] = {}  # (key, column) -> value set by a committed transaction
        txs = []
        for _ in range(4):
            changes: dict[int, dict[str, object] | None] = {}
            for key in rng.sample(range(1, 8), 2):
                if key in base and rng.random() < 0.2:
                    changes[key] = None
                else:
                    row = dict(base.get(key, {"k": key, "a": 0, "b": "new"}))
                    column = rng.choice(["a", "b"])
                    row[column] = rng.randrange(3) if column == "a" else rng.choice("pq")
                    changes[key] = row
            tx = db.transaction()
            upserts = [r for r in changes.values() if r is not None]
            if upserts:
                tx.upsert("kv", pa.Table.from_pylist(upserts, schema=KV))
            deletes = [k for k, r in changes.items() if r is None]
            if deletes:
                tx.delete("kv", keys={"k": deletes})
            txs.append((tx, changes))
        rng.shuffle(txs)
        for tx, changes in txs:
            cells = _cells(base, changes)
            clash = any(cell in touched and touched[cell] != value for cell, value in cells.items())
            if clash:
                with pytest.raises(udr.ConflictError):
                    tx.commit()
                continue
            tx.commit()
            for (key, column), value in cells.items():
                touched[(key, column)] = value
                if column == "deleted":
                    model.pop(key, None)
                else:
                    model.setdefault(key, {"k": key, "a": None, "b": None})[column] = value
        assert {r["k"]: r for r in db.read("kv").to_pylist()} == model, f"round {round_}"


def _cells(base: dict[int, dict[str, object]], changes: dict[int, dict[str, object] | None]
           ) -> dict[tuple[int, str], object]:
    """The cells a transaction changes relative to `base`; a delete (or insert) claims every cell of its row."""
    out: dict[tuple[int, str], object] = {}
    for key, row in changes.items():
        old = base.get(key)
        if row is None:
            out.update({(key, c): "deleted" for c in ("a", "b", "deleted")})
        elif old is None:
            out.update({(key, c): row[c] for c in ("a", "b")})
        else:
            out.update({(key, c): row[c] for c in ("a", "b") if row[c] != old[c]})
    return out
