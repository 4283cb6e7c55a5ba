"""Cherry-pick and replay (issue 12): re-applying commits cell by cell, keeping who and why, and replay with a
commit skipped agreeing with a revert of that commit."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

import udr

SCHEMA = pa.schema([("id", pa.int64()), ("a", pa.int64()), ("b", pa.string())])


def rows(db: udr.Lake, table: str, branch: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = db.read(table, branch).sort_by("id").to_pylist()
    return found


def batch(*items: tuple[int, int, str]) -> pa.Table:
    return pa.Table.from_pylist([{"id": i, "a": a, "b": b} for i, a, b in items], schema=SCHEMA)


@pytest.fixture
def db(tmp_path: Path) -> udr.Lake:
    lake = udr.open(tmp_path / "lake")
    lake.create_table("t", SCHEMA, primary_key=["id"])
    lake.upsert("t", batch((1, 1, "x"), (2, 2, "y"), (3, 3, "z")), author="ann", message="load")
    return lake


def test_cherry_pick_reapplies_cells_and_keeps_author_message_and_metadata(db: udr.Lake) -> None:
    start = db.commit_info("main")
    db.create_branch("fix")
    with db.transaction("fix", message="fix a", author="bob", metadata={"ticket": "T-1"}) as tx:
        tx.upsert("t", batch((1, 10, "x")))
    picked = db.commit_info("fix")
    db.upsert("t", batch((1, 1, "X")), message="main b")
    done = db.cherry_pick(picked.id, onto="main")
    assert (done.author, done.message) == ("bob", "fix a")
    assert done.metadata == {"ticket": "T-1", "udr.replayed_from": picked.id}
    assert done.parents[0] != start.id and len(done.parents) == 1
    # Cell by cell: main's own change to b of row 1 stays, the picked change to a lands.
    assert rows(db, "t", "main")[0] == {"id": 1, "a": 10, "b": "X"}
    assert db.cherry_pick(picked.id, onto="main", author="cy").id == done.id  # nothing left to apply


def test_cherry_pick_conflict_names_the_commit_and_writes_nothing(db: udr.Lake) -> None:
    db.create_branch("fix")
    picked = db.upsert("t", batch((2, 20, "y")), branch="fix")
    db.upsert("t", batch((2, 21, "y")))
    head = db.resolve(None, "main")
    with pytest.raises(udr.MergeConflict) as caught:
        db.cherry_pick(picked.id)
    assert [(c.table, c.key, c.column, c.commit) for c in caught.value.conflicts] == [("t", {"id": 2}, "a", picked.id)]
    assert picked.short_id in str(caught.value)
    assert db.resolve(None, "main") == head
    with pytest.raises(udr.UsageError, match="root commit"):
        db.cherry_pick(db.log()[-1].id)


def test_replay_keeps_who_and_why_and_marks_the_original(db: udr.Lake) -> None:
    start = db.commit_info("main")
    first = db.upsert("t", batch((1, 5, "x")), author="bob", message="one")
    with db.transaction(message="two", author="cy", metadata={"ticket": "T-2"}) as tx:
        tx.upsert("t", batch((2, 6, "y")))
    second = db.commit_info("main")
    head = db.replay("inv", start=start.id)
    assert rows(db, "t", "inv") == rows(db, "t", "main")
    replayed = db.log("inv", limit=2)
    assert [(c.author, c.message, c.metadata) for c in replayed] == [
        ("cy", "two", {"ticket": "T-2", "udr.replayed_from": second.id}),
        ("bob", "one", {"udr.replayed_from": first.id})]
    assert head.id == replayed[0].id and head.id != second.id


def test_replay_until_and_tables_limit_what_is_replayed(db: udr.Lake) -> None:
    start = db.commit_info("main")
    db.create_table("u", SCHEMA, primary_key=["id"])
    with db.transaction(message="both") as tx:
        tx.upsert("t", batch((1, 7, "x")))
        tx.upsert("u", batch((9, 9, "n")))
    middle = db.commit_info("main")
    db.upsert("t", batch((3, 30, "z")))
    db.replay("only-t", start=start.id, tables=["t"])
    assert db.tables("only-t") == ["t"]
    assert rows(db, "t", "only-t") == rows(db, "t", "main")
    db.replay("upto", start=start.id, until=middle.id)
    assert rows(db, "u", "upto") == [{"id": 9, "a": 9, "b": "n"}]
    assert rows(db, "t", "upto")[2] == {"id": 3, "a": 3, "b": "z"}


def test_replay_conflict_raises_naming_the_commit_and_leaves_no_branch(db: udr.Lake) -> None:
    start = db.commit_info("main")
    bad = db.upsert("t", batch((1, 100, "x")), message="bad import")
    fixup = db.upsert("t", batch((1, 101, "x")), message="builds on it")
    with pytest.raises(udr.MergeConflict) as caught:
        db.replay("inv", start=start.id, skip=(bad.id,))
    assert {c.commit for c in caught.value.conflicts} == {fixup.id}
    assert "inv" not in db.branches()
    skipped = db.replay("inv", start=start.id, skip=(bad.id,), on_conflict="skip")
    assert json.loads(skipped.metadata["udr.replay_skipped"]) == [
        {"commit": fixup.id, "conflicts": [{"table": "t", "key": {"id": 1}, "column": "a"}]}]
    assert db.log("inv")[0] == skipped and skipped.tables == {}  # recorded in the log, changing no table
    assert rows(db, "t", "inv")[0] == {"id": 1, "a": 1, "b": "x"}


def test_replay_rejects_bad_input_before_writing(db: udr.Lake) -> None:
    start = db.commit_info("main")
    db.create_branch("side")
    elsewhere = db.upsert("t", batch((1, 2, "q")), branch="side")
    with pytest.raises(udr.UsageError, match="not between"):
        db.replay("inv", start=start.id, skip=(elsewhere.id,))
    with pytest.raises(udr.UsageError, match="on_conflict"):
        db.replay("inv", start=start.id, on_conflict="maybe")
    with pytest.raises(udr.RefNotFound):
        db.replay("inv", start=elsewhere.id)
    with pytest.raises(udr.UsageError, match="already exists"):
        db.replay("side", start=start.id)
    assert set(db.branches()) == {"main", "side"}


def test_replay_reapplies_a_merge_as_one_commit(db: udr.Lake) -> None:
    start = db.commit_info("main")
    db.create_branch("dev")
    db.upsert("t", batch((2, 20, "y")), branch="dev", author="dee")
    db.upsert("t", batch((3, 30, "z")))
    merged = db.merge("dev", author="mo")
    db.replay("inv", start=start.id)
    assert rows(db, "t", "inv") == rows(db, "t", "main")
    assert db.commit_info("inv").metadata["udr.replayed_from"] == merged.id


def random_edit(db: udr.Lake, rng: random.Random, serial: int) -> udr.Commit:
    """An upsert (values never written before: see below) or a delete, of a random table."""
    table = rng.choice(["t", "v"])
    if rng.random() < 0.2:
        return db.delete(table, f"id = {rng.randrange(10)}")
    keys = rng.sample(range(10), rng.randint(1, 3))
    return db.upsert(table, batch(*((k, serial * 10 + n, rng.choice(["p", "q", f"s{serial}"]))
                                    for n, k in enumerate(keys))))


def test_replay_skipping_a_commit_equals_reverting_it(tmp_path: Path) -> None:
    """Replay without commit K and a revert of K give the same tables whenever both succeed, also where a later
    commit set a cell back to a value K replaced (column `b` often repeats values: A -> B -> A histories)."""
    agreed = 0
    for seed in range(4):
        rng = random.Random(seed)
        db = udr.open(tmp_path / f"lake{seed}")
        with db.transaction(message="tables") as tx:
            tx.create_table("t", SCHEMA, primary_key=["id"])
            tx.create_table("v", SCHEMA, primary_key=["id"])
        start = db.commit_info("main")
        edits = [random_edit(db, rng, serial) for serial in range(6)]
        for n, skipped in enumerate(e for e in edits if e.id != start.id):
            db.create_branch(f"rv{n}")
            try:
                db.revert(skipped.id, f"rv{n}")
                db.replay(f"rp{n}", start=start.id, skip=(skipped.id,))
            except udr.MergeConflict:
                continue
            agreed += 1
            for table in ("t", "v"):
                assert rows(db, table, f"rp{n}") == rows(db, table, f"rv{n}"), (seed, skipped.id, table)
    assert agreed >= 4


def test_a_revert_keeps_a_row_a_later_commit_put_back(tmp_path: Path) -> None:
    """K inserts a row, a later commit deletes it and another inserts it again: reverting K keeps the row (the
    re-insert did not depend on K), as a replay without K does; a three-way merge would delete it."""
    with udr.open(tmp_path) as db:
        db.create_table("t", SCHEMA, primary_key=["id"])
        k = db.upsert("t", batch((1, 10, "p")))
        db.delete("t", "id = 1")
        db.upsert("t", batch((1, 10, "p")))
        last = db.upsert("t", batch((2, 20, "q")))
        assert db.revert(k.id) == last  # nothing to undo: no commit
        assert rows(db, "t", "main") == [{"id": 1, "a": 10, "b": "p"}, {"id": 2, "a": 20, "b": "q"}]
        db.replay("without-k", start=k.parents[0], skip=(k.id,))
        assert rows(db, "t", "without-k") == rows(db, "t", "main")
