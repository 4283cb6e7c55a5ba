"""Git for data (issue #4) driven as a user drives it: branches, tags, merges (fast-forward and three-way,
row- and cell-level for keyed tables, table-level otherwise), conflicts and strategies, diffs across
branches, reset, revert, isolation across processes, and gc safety with many branches.

The random-edit merge checks against a model live in test_merge_properties.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import udr

DiskState = dict[str, str]
ITEMS = pa.schema([("id", pa.int64()), ("name", pa.string()), ("qty", pa.int64()), ("price", pa.float64())])


def items(*rows: tuple[int, str | None, int | None, float | None]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(ITEMS.names, r)) for r in rows], schema=ITEMS)


BASE = items((1, "apple", 10, 1.0), (2, "pear", 20, 2.0), (3, "plum", 30, 3.0), (4, "fig", 40, 4.0))


def table_rows(db: udr.Lake, table: str = "items", **kwargs: object) -> list[tuple[object, ...]]:
    data = db.read(table, **kwargs)  # type: ignore[arg-type]
    return sorted(tuple(r.values()) for r in data.to_pylist())


def as_rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


@pytest.fixture
def lake(db: udr.Lake) -> udr.Lake:
    """`items` keyed by id with four rows on main, and branch `dev` at the same commit."""
    db.create_table("items", ITEMS, primary_key=["id"])
    db.append("items", BASE, message="base")
    db.create_branch("dev")
    return db


def warm(db: udr.Lake) -> None:
    """Read every table at every commit of every branch, so caches are filled before a disk comparison."""
    for branch in db.branches():
        for commit in db.log(branch):
            for table in db.tables(at=commit.id):
                db.read(table, at=commit.id)


# -- branches -------------------------------------------------------------------------------------------------


def test_create_branch_returns_its_head_and_branches_lists_every_head(db: udr.Lake) -> None:
    first = db.append("items", BASE)
    made = db.create_branch("dev")
    assert made == first
    second = db.append("items", items((9, "kiwi", 1, 1.0)))
    older = db.create_branch("old", at=first.id)
    assert older.id == first.id
    from_dev = db.create_branch("dev2", from_="dev")
    assert from_dev.id == first.id
    assert db.create_branch("tilde", at="main~1").id == first.id
    assert db.branches() == {"main": second.id, "dev": first.id, "old": first.id, "dev2": first.id,
                             "tilde": first.id}


def test_bad_branch_creations_are_refused(lake: udr.Lake) -> None:
    with pytest.raises(udr.UsageError, match="dev"):
        lake.create_branch("dev")
    with pytest.raises(udr.InvalidName):
        lake.create_branch("a/../b")
    with pytest.raises(udr.RefNotFound):
        lake.create_branch("x", from_="nope")
    with pytest.raises(udr.RefNotFound):
        lake.create_branch("x", at="0" * 40)
    assert sorted(lake.branches()) == ["dev", "main"]


def test_creating_a_branch_writes_no_chunk(db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table],
                                           chunk_files: Callable[[Path], list[Path]]) -> None:
    db.append("big", make_big(0))
    files = chunk_files(lake_path)
    stats = db.stats()
    for n in range(5):
        db.create_branch(f"b{n}")
    assert chunk_files(lake_path) == files
    assert db.stats() == stats
    assert db.read("big", branch="b4").equals(db.read("big"))


def test_writes_on_a_branch_are_invisible_elsewhere_until_merged(lake: udr.Lake) -> None:
    lake.create_branch("other")
    lake.upsert("items", items((2, "pear", 21, 2.0), (5, "lime", 5, 5.0)), branch="dev")
    lake.delete("items", "id = 1", branch="dev")
    lake.append("dev_only", {"x": [1]}, branch="dev")
    assert table_rows(lake) == as_rows(BASE)
    assert table_rows(lake, branch="other") == as_rows(BASE)
    assert lake.tables() == ["items"] and lake.tables(branch="dev") == ["dev_only", "items"]
    assert [r[0] for r in table_rows(lake, branch="dev")] == [2, 3, 4, 5]
    lake.upsert("items", items((4, "fig", 0, 4.0)))
    assert (4, "fig", 40, 4.0) in table_rows(lake, branch="dev")
    lake.merge("dev")
    assert table_rows(lake) == [(2, "pear", 21, 2.0), (3, "plum", 30, 3.0), (4, "fig", 0, 4.0), (5, "lime", 5, 5.0)]
    assert table_rows(lake, branch="other") == as_rows(BASE)


def test_delete_branch_refuses_main_and_unmerged_work_unless_forced(lake: udr.Lake) -> None:
    with pytest.raises(udr.UsageError, match="main"):
        lake.delete_branch("main")
    with pytest.raises(udr.UsageError, match="main"):
        lake.delete_branch("main", force=True)
    lake.delete_branch("dev")  # no commits of its own
    lake.create_branch("work")
    work = lake.upsert("items", items((7, "date", 7, 7.0)), branch="work")
    with pytest.raises(udr.UsageError, match="work"):
        lake.delete_branch("work")
    assert "work" in lake.branches()
    lake.delete_branch("work", force=True)
    assert sorted(lake.branches()) == ["main"]
    assert (7, "date", 7, 7.0) in table_rows(lake, at=work.id), "a deleted branch's commit is unreachable by id"
    with pytest.raises(udr.RefNotFound):
        lake.delete_branch("work")
    with pytest.raises(udr.RefNotFound):
        lake.read("items", branch="work")


def test_a_merged_branch_can_be_deleted_without_force(lake: udr.Lake) -> None:
    lake.upsert("items", items((7, "date", 7, 7.0)), branch="dev")
    lake.upsert("items", items((8, "nut", 8, 8.0)))
    lake.merge("dev")
    lake.delete_branch("dev")
    assert "dev" not in lake.branches()


# -- tags -------------------------------------------------------------------------------------------------------


def test_tags_name_commits_and_never_move(lake: udr.Lake) -> None:
    base = lake.commit_info("main")
    assert lake.tag("v1") == base
    assert lake.tag("before", "main~1").id == base.parents[0]
    lake.upsert("items", items((1, "apple", 0, 1.0)))
    assert lake.tags() == {"v1": base.id, "before": base.parents[0]}
    assert table_rows(lake, at="v1") == as_rows(BASE)
    with pytest.raises(udr.UsageError, match="v1"):
        lake.tag("v1")
    with pytest.raises(udr.UsageError, match="v1"):
        lake.tag("v1", base.id)  # even to the same commit: a tag is created once
    assert lake.tags()["v1"] == base.id
    lake.delete_tag("v1")
    assert "v1" not in lake.tags()
    with pytest.raises(udr.RefNotFound):
        lake.delete_tag("v1")
    with pytest.raises(udr.RefNotFound):
        lake.read("items", at="v1")
    assert lake.tag("v1").id == lake.resolve("main")
    with pytest.raises(udr.InvalidName):
        lake.tag("bad name\n")
    with pytest.raises(udr.RefNotFound):
        lake.tag("t2", "nope")


# -- merge: fast-forward ---------------------------------------------------------------------------------------


def test_merge_fast_forwards_when_main_has_no_commits_of_its_own(lake: udr.Lake) -> None:
    c1 = lake.upsert("items", items((5, "lime", 5, 5.0)), branch="dev")
    c2 = lake.delete("items", "id = 1", branch="dev")
    commits = lake.stats().commits
    merged = lake.merge("dev")
    assert merged == c2
    assert lake.resolve("main") == c2.id
    assert [c.id for c in lake.log()][:2] == [c2.id, c1.id]
    assert lake.stats().commits == commits, "a fast-forward wrote a commit"


def test_merging_an_already_merged_branch_changes_nothing(lake: udr.Lake) -> None:
    lake.upsert("items", items((5, "lime", 5, 5.0)), branch="dev")
    lake.merge("dev")
    assert lake.merge("dev").id == lake.resolve("main")
    lake.upsert("items", items((6, "yuzu", 6, 6.0)))
    head = lake.resolve("main")
    assert lake.merge("dev").id == head
    assert lake.resolve("main") == head


def test_merge_accepts_a_tag_or_a_commit_id_as_source(lake: udr.Lake) -> None:
    c1 = lake.upsert("items", items((5, "lime", 5, 5.0)), branch="dev")
    lake.upsert("items", items((6, "yuzu", 6, 6.0)), branch="dev")
    lake.tag("half", c1.id)
    assert lake.merge("half") == c1
    assert [r[0] for r in table_rows(lake)] == [1, 2, 3, 4, 5]
    with pytest.raises(udr.RefNotFound):
        lake.merge("nope")


# -- merge: three-way, keyed -----------------------------------------------------------------------------------


def test_different_rows_merge_cleanly_into_a_two_parent_commit(lake: udr.Lake) -> None:
    ours = lake.upsert("items", items((1, "apple", 11, 1.0), (5, "lime", 5, 5.0)))
    lake.delete("items", keys={"id": [4]}, branch="dev")
    theirs = lake.upsert("items", items((2, "pear", 22, 2.0), (6, "yuzu", 6, 6.0)), branch="dev")
    merged = lake.merge("dev", message="bring dev in", author="mia")
    assert merged.parents == (ours.id, theirs.id)
    assert (merged.message, merged.author, merged.branch) == ("bring dev in", "mia", "main")
    assert merged.tables == {"items": udr.TableChange(inserted=1, updated=1, deleted=1)}
    assert table_rows(lake) == [(1, "apple", 11, 1.0), (2, "pear", 22, 2.0), (3, "plum", 30, 3.0),
                                (5, "lime", 5, 5.0), (6, "yuzu", 6, 6.0)]
    assert table_rows(lake, branch="dev") == [(1, "apple", 10, 1.0), (2, "pear", 22, 2.0), (3, "plum", 30, 3.0),
                                              (6, "yuzu", 6, 6.0)]
    assert lake.verify().ok


def test_different_columns_of_the_same_row_merge_cleanly(lake: udr.Lake) -> None:
    lake.upsert("items", items((1, "apple", 11, 1.0), (2, "pear", 20, 2.5)))
    lake.upsert("items", items((1, "APPLE", 10, 1.0), (2, "pear", 20, 2.5)), branch="dev")  # 2: the same change
    merged = lake.merge("dev")
    assert len(merged.parents) == 2
    assert merged.tables == {"items": udr.TableChange(updated=1)}
    assert table_rows(lake)[:2] == [(1, "APPLE", 11, 1.0), (2, "pear", 20, 2.5)]


def test_a_cell_set_to_null_on_one_side_merges_with_other_cells_of_the_row(lake: udr.Lake) -> None:
    lake.upsert("items", items((3, None, 30, 3.0)))
    lake.upsert("items", items((3, "plum", 30, None)), branch="dev")
    lake.merge("dev")
    assert table_rows(lake)[2] == (3, None, 30, None)


def test_the_same_cell_changed_differently_is_a_conflict_and_nothing_changes(
    lake: udr.Lake, lake_path: Path, disk_state: Callable[[Path], DiskState]
) -> None:
    lake.upsert("items", items((1, "apple", 11, 1.0), (3, "plum", 31, 3.5)))
    lake.upsert("items", items((1, "apple", 12, 1.0), (2, "pear", 22, 2.0), (3, "plum", 32, 3.5)), branch="dev")
    warm(lake)
    head, before = lake.resolve("main"), disk_state(lake_path)
    with pytest.raises(udr.MergeConflict) as info:
        lake.merge("dev")
    assert sorted(info.value.conflicts, key=lambda c: str(c.key)) == [
        udr.Conflict("items", {"id": 1}, "qty", 10, 11, 12),
        udr.Conflict("items", {"id": 3}, "qty", 30, 31, 32),
    ]
    message = str(info.value)
    assert "items" in message and "qty" in message and "strategy" in message
    assert lake.resolve("main") == head
    assert disk_state(lake_path) == before, "a failed merge changed the lake on disk"


@pytest.mark.parametrize("deleter", ["main", "dev"])
def test_delete_against_update_of_a_row_is_a_whole_row_conflict(lake: udr.Lake, deleter: str) -> None:
    updater = "dev" if deleter == "main" else "main"
    lake.delete("items", keys={"id": [2]}, branch=deleter)
    lake.upsert("items", items((2, "pear", 99, 2.0)), branch=updater)
    head = lake.resolve("main")
    with pytest.raises(udr.MergeConflict) as info:
        lake.merge("dev")
    [conflict] = info.value.conflicts
    assert (conflict.table, conflict.key, conflict.column) == ("items", {"id": 2}, None)
    updated = {"id": 2, "name": "pear", "qty": 99, "price": 2.0}
    assert conflict.base == {"id": 2, "name": "pear", "qty": 20, "price": 2.0}
    assert (conflict.ours, conflict.theirs) == ((None, updated) if deleter == "main" else (updated, None))
    assert lake.resolve("main") == head


def test_strategies_resolve_every_conflict_one_way_and_keep_clean_changes(lake: udr.Lake) -> None:
    lake.create_branch("main2")
    for branch in ("main", "main2"):
        lake.upsert("items", items((1, "apple", 11, 1.0), (3, "plum", 30, 9.0)), branch=branch)
        lake.delete("items", keys={"id": [2]}, branch=branch)
    lake.upsert("items", items((1, "apple", 12, 1.0), (2, "pear", 22, 2.0), (3, "PLUM", 30, 3.0)), branch="dev")
    lake.delete("items", keys={"id": [4]}, branch="dev")
    ours = lake.merge("dev", strategy="ours")
    theirs = lake.merge("dev", into="main2", strategy="theirs")
    assert len(ours.parents) == len(theirs.parents) == 2
    # 1: qty conflict; 2: delete vs update; 3: different columns, clean; 4: deleted by dev only, clean.
    assert table_rows(lake) == [(1, "apple", 11, 1.0), (3, "PLUM", 30, 9.0)]
    assert table_rows(lake, branch="main2") == [(1, "apple", 12, 1.0), (2, "pear", 22, 2.0), (3, "PLUM", 30, 9.0)]


@pytest.mark.parametrize("fast_forward", [False, True])
def test_an_unknown_strategy_is_a_usage_error_even_for_a_fast_forward(lake: udr.Lake, fast_forward: bool) -> None:
    if not fast_forward:
        lake.upsert("items", items((1, "apple", 11, 1.0)))
    lake.upsert("items", items((2, "pear", 22, 2.0)), branch="dev")
    head = lake.resolve("main")
    with pytest.raises(udr.UsageError, match="strategy"):
        lake.merge("dev", strategy="mine")
    assert lake.resolve("main") == head


def test_both_sides_inserting_a_key_with_a_null_cell_conflict_and_theirs_wins_with_strategy(lake: udr.Lake) -> None:
    lake.create_branch("main2")
    for branch in ("main", "main2"):
        lake.upsert("items", items((5, "ours", 5, None)), branch=branch)
    lake.upsert("items", items((5, None, 5, 5.0)), branch="dev")
    with pytest.raises(udr.MergeConflict) as info:
        lake.merge("dev")
    assert sorted(c.column for c in info.value.conflicts) == ["name", "price"]  # type: ignore[type-var]
    lake.merge("dev", into="main2", strategy="theirs")
    assert table_rows(lake, branch="main2")[-1] == (5, None, 5, 5.0)


def test_a_merge_that_changes_no_row_still_records_the_merge(lake: udr.Lake) -> None:
    ours = lake.delete("items", keys={"id": [1]})
    theirs = lake.delete("items", keys={"id": [1]}, branch="dev")
    merged = lake.merge("dev")
    assert merged.parents == (ours.id, theirs.id)
    # Main re-adds the row; dev, merged already, changes another row: this must merge cleanly.
    lake.upsert("items", items((1, "apple", 10, 1.0)))
    lake.upsert("items", items((2, "pear", 0, 2.0)), branch="dev")
    lake.merge("dev")
    lake.delete_branch("dev")


def test_a_failed_merge_writes_no_chunk(db: udr.Lake, lake_path: Path, disk_state: Callable[[Path], DiskState],
                                        make_big: Callable[..., pa.Table],
                                        chunk_files: Callable[[Path], list[Path]]) -> None:
    big = make_big(5, rows=9_000)
    db.create_table("a_big", big.schema, primary_key=["a"])
    db.append("a_big", big)
    db.create_table("z", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
    db.append("z", {"id": [1], "v": ["base"]})
    db.create_branch("dev")
    # Both sides rewrite every row of a_big, in different columns: the merge must write new rows.
    db.upsert("a_big", big.set_column(1, "b", pc.add(big.column("b"), 1)))
    db.upsert("a_big", big.set_column(2, "c", pc.add(big.column("c"), 1)), branch="dev")
    db.upsert("z", {"id": [1], "v": ["ours"]})
    db.upsert("z", {"id": [1], "v": ["theirs"]}, branch="dev")
    warm(db)
    files, before = chunk_files(lake_path), disk_state(lake_path)
    with pytest.raises(udr.MergeConflict):
        db.merge("dev")
    assert chunk_files(lake_path) == files
    assert disk_state(lake_path) == before


# -- merge: tables as a whole ----------------------------------------------------------------------------------


def test_unkeyed_tables_merge_when_only_one_side_changed_them(db: udr.Lake) -> None:
    db.append("mine", {"x": [1]})
    db.append("theirs", {"x": [1]})
    db.create_branch("dev")
    db.append("mine", {"x": [2]})
    db.append("theirs", {"x": [3]}, branch="dev")
    db.append("new_on_dev", {"y": ["a"]}, branch="dev")
    merged = db.merge("dev")
    assert len(merged.parents) == 2
    assert sorted(db.read("mine").column("x").to_pylist()) == [1, 2]
    assert sorted(db.read("theirs").column("x").to_pylist()) == [1, 3]
    assert db.read("new_on_dev").column("y").to_pylist() == ["a"]
    assert merged.tables == {"theirs": udr.TableChange(inserted=1), "new_on_dev": udr.TableChange(inserted=1)}


def test_an_unkeyed_table_appended_on_both_sides_merges_as_a_multiset(db: udr.Lake) -> None:
    db.append("log", {"x": [1]})
    db.append("other", {"x": [1]})
    db.create_branch("dev")
    db.append("log", {"x": [2]})
    db.append("log", {"x": [3]}, branch="dev")
    db.append("other", {"x": [4]}, branch="dev")
    merged = db.merge("dev")
    assert sorted(db.read("log").column("x").to_pylist()) == [1, 2, 3]
    assert sorted(db.read("other").column("x").to_pylist()) == [1, 4]
    assert merged.tables["log"].inserted == 1


def test_tables_created_or_dropped_on_one_side_merge(db: udr.Lake) -> None:
    db.append("keep", {"x": [1]})
    db.append("doomed", {"x": [1]})
    db.create_branch("dev")
    db.drop_table("doomed", branch="dev")
    db.append("fresh", {"x": [5]}, branch="dev")
    db.append("keep", {"x": [2]})
    db.merge("dev")
    assert db.tables() == ["fresh", "keep"]


def test_a_table_created_on_both_sides_with_other_rows_conflicts(db: udr.Lake) -> None:
    db.append("seed", {"x": [0]})
    db.create_branch("dev")
    db.append("t", {"x": [1]})
    db.append("t", {"x": [2]}, branch="dev")
    with pytest.raises(udr.MergeConflict) as info:
        db.merge("dev")
    assert [(c.table, c.key, c.column) for c in info.value.conflicts] == [("t", None, None)]


def test_a_schema_change_on_one_side_merges_with_row_changes_on_the_other(lake: udr.Lake) -> None:
    lake.create_branch("dev2")
    # main adds a column (with a new row that fills it); dev changes rows.
    noted = ITEMS.append(pa.field("note", pa.string()))
    lake.append("items", pa.Table.from_pylist([{"id": 5, "name": "lime", "qty": 5, "price": 5.0, "note": "ripe"}],
                                              schema=noted), evolve=True)
    lake.upsert("items", items((2, "pear", 22, 2.0), (6, "yuzu", 6, 6.0)), branch="dev")
    merged = lake.merge("dev")
    assert len(merged.parents) == 2
    assert lake.schema("items").names == noted.names
    assert table_rows(lake) == [(1, "apple", 10, 1.0, None), (2, "pear", 22, 2.0, None), (3, "plum", 30, 3.0, None),
                                (4, "fig", 40, 4.0, None), (5, "lime", 5, 5.0, "ripe"), (6, "yuzu", 6, 6.0, None)]
    # The other way round: the merged-in branch changes the schema, the target changes rows.
    lake.create_branch("side", from_="dev2")
    lake.append("items", pa.table({"id": [9], "name": ["nut"], "qty": [9], "price": [9.0], "origin": ["es"]}),
                branch="side", evolve=True)
    lake.upsert("items", items((4, "fig", 44, 4.0)), branch="dev2")
    merged = lake.merge("side", into="dev2")
    assert len(merged.parents) == 2
    assert lake.schema("items", branch="dev2").names == [*ITEMS.names, "origin"]
    assert table_rows(lake, branch="dev2") == [
        (1, "apple", 10, 1.0, None), (2, "pear", 20, 2.0, None), (3, "plum", 30, 3.0, None),
        (4, "fig", 44, 4.0, None), (9, "nut", 9, 9.0, "es")]


@pytest.mark.parametrize("evolver", [
    "main",
    "dev",
])
def test_a_column_added_and_filled_on_one_side_merges_with_an_update_of_the_same_row(lake: udr.Lake,
                                                                                    evolver: str) -> None:
    other = "dev" if evolver == "main" else "main"
    noted = ITEMS.append(pa.field("note", pa.string()))
    lake.append("items", pa.Table.from_pylist([{"id": 5, "name": "lime", "qty": 5, "price": 5.0, "note": "n5"}],
                                              schema=noted), branch=evolver, evolve=True)
    lake.upsert("items", pa.Table.from_pylist([{"id": 1, "name": "apple", "qty": 10, "price": 1.0, "note": "n1"}],
                                              schema=noted), branch=evolver)
    lake.upsert("items", items((1, "apple", 11, 1.0)), branch=other)
    lake.merge("dev")
    assert table_rows(lake)[0] == (1, "apple", 11, 1.0, "n1")


def test_different_schema_changes_on_both_sides_conflict(lake: udr.Lake) -> None:
    lake.append("items", pa.table({"id": [7], "name": ["a"], "qty": [1], "price": [1.0], "colour": ["red"]}),
                evolve=True)
    lake.append("items", pa.table({"id": [8], "name": ["b"], "qty": [1], "price": [1.0], "size": [3]}),
                branch="dev", evolve=True)
    with pytest.raises(udr.MergeConflict) as info:
        lake.merge("dev")
    assert [(c.table, c.key, c.column) for c in info.value.conflicts] == [("items", None, None)]
    assert "schema" in str(info.value)


def test_a_compaction_on_one_side_does_not_stop_a_keyed_merge(lake: udr.Lake) -> None:
    lake.delete("items", keys={"id": [4]})  # a deletion vector for the compaction to drop
    lake.create_branch("dev2")
    lake.compact("items")
    lake.upsert("items", items((1, "apple", 11, 1.0), (5, "lime", 5, 5.0)), branch="dev2")
    lake.merge("dev2")
    assert table_rows(lake) == [(1, "apple", 11, 1.0), (2, "pear", 20, 2.0), (3, "plum", 30, 3.0), (5, "lime", 5, 5.0)]


def test_a_compaction_on_one_side_does_not_stop_an_unkeyed_merge(db: udr.Lake) -> None:
    db.append("log", {"x": [1, 2]})
    db.append("log", {"x": [5]})
    db.delete("log", "x = 2")
    db.create_branch("dev")
    db.compact("log")
    db.append("log", {"x": [3]}, branch="dev")
    db.merge("dev")
    assert sorted(db.read("log").column("x").to_pylist()) == [1, 3, 5]


def test_compacting_on_a_branch_leaves_main_alone(lake: udr.Lake) -> None:
    lake.delete("items", keys={"id": [4]})
    head = lake.resolve("main")
    lake.create_branch("dev2")
    commit = lake.compact("items", branch="dev2")
    assert commit.branch == "dev2"
    assert lake.resolve("main") == head
    assert table_rows(lake, branch="dev2") == table_rows(lake)


def test_the_change_feed_of_main_shows_a_merge_as_one_commit_of_what_it_brought(lake: udr.Lake) -> None:
    ours = lake.upsert("items", items((1, "apple", 11, 1.0)))
    pear = lake.upsert("items", items((2, "pear", 22, 2.0)), branch="dev")
    lake.delete("items", keys={"id": [3]}, branch="dev")
    merged = lake.merge("dev")
    feed = lake.changes("items", since=ours.id)
    assert [(r["id"], r["_change"]) for r in feed.to_pylist()] == [(3, "delete"), (2, "update_before"),
                                                                   (2, "update_after")]
    assert set(feed.column("_commit_id").to_pylist()) == {merged.id}
    versions = lake.history("items", key={"id": 2})
    assert versions.column("_change").to_pylist() == ["insert", "update_before", "update_after"]
    # History follows every parent: the version is credited to the dev commit that wrote it (issue 12).
    assert versions.column("_commit_id").to_pylist()[-1] == pear.id


def test_reverting_a_merge_commit_undoes_what_the_merge_brought(lake: udr.Lake) -> None:
    lake.upsert("items", items((1, "apple", 11, 1.0)))
    before = table_rows(lake)
    lake.upsert("items", items((2, "pear", 22, 2.0), (7, "date", 7, 7.0)), branch="dev")
    merged = lake.merge("dev")
    reverted = lake.revert(merged.id)
    assert reverted.tables == {"items": udr.TableChange(inserted=0, updated=1, deleted=1)}
    assert table_rows(lake) == before


# -- diff across branches --------------------------------------------------------------------------------------


def test_diff_and_diff_summary_compare_branches(lake: udr.Lake) -> None:
    lake.upsert("items", items((1, "apple", 11, 1.0)), branch="dev")
    lake.delete("items", keys={"id": [2]}, branch="dev")
    lake.append("extra", {"x": [1, 2]}, branch="dev")
    lake.upsert("items", items((9, "nut", 9, 9.0)))
    net = lake.diff("items", "main", "dev")
    assert [(r["id"], r["_change"]) for r in net.to_pylist()] == [
        (2, "delete"), (9, "delete"), (1, "update_before"), (1, "update_after")]
    assert set(net.column("_commit_id").to_pylist()) == {lake.resolve("dev")}
    assert lake.diff_summary("main", "dev") == {
        "items": udr.TableChange(inserted=0, updated=1, deleted=2), "extra": udr.TableChange(inserted=2)}
    assert lake.diff_summary("dev", "main") == {
        "items": udr.TableChange(inserted=2, updated=1, deleted=0), "extra": udr.TableChange(deleted=2)}
    assert lake.diff_summary("main", "main") == {}


# -- reset -----------------------------------------------------------------------------------------------------


def test_reset_moves_a_branch_and_the_old_head_stays_reachable_by_id(lake: udr.Lake) -> None:
    base = lake.resolve("main")
    lake.tag("base")
    c1 = lake.upsert("items", items((5, "lime", 5, 5.0)))
    c2 = lake.delete("items", "id < 3")
    assert lake.reset("main", to="base").id == base
    assert lake.resolve("main") == base
    assert table_rows(lake) == as_rows(BASE)
    assert c1.id not in [c.id for c in lake.log()]
    assert [r[0] for r in table_rows(lake, at=c2.id)] == [3, 4, 5]
    assert lake.commit_info(c2.id) == c2
    lake.reset("main", to=c2.id)
    assert [r[0] for r in table_rows(lake)] == [3, 4, 5]
    lake.reset("dev", to=c1.id)
    assert lake.resolve("dev") == c1.id
    with pytest.raises(udr.RefNotFound):
        lake.reset("main", to="nope")
    with pytest.raises(udr.RefNotFound):
        lake.reset("nobranch", to="main")
    assert lake.verify().ok


# -- revert ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["upsert", "delete", "overwrite", "append"])
def test_revert_restores_the_table_exactly(lake: udr.Lake, kind: str) -> None:
    before = lake.read("items")
    write = {
        "upsert": lambda: lake.upsert("items", items((1, None, 11, None), (6, "yuzu", 6, 6.0))),
        "delete": lambda: lake.delete("items", "qty >= 20"),
        "overwrite": lambda: lake.overwrite("items", items((2, "pear", 2, 2.0), (8, "nut", 8, 8.0))),
        "append": lambda: lake.append("items", items((6, "yuzu", 6, 6.0), (7, "date", 7, None))),
    }[kind]()
    lake.upsert("items", items((99, "other", 0, 0.0)))  # a later commit touching other rows
    reverted = lake.revert(write.id)
    assert reverted.parents == (lake.log()[1].id,)
    assert write.id[:10] in reverted.message
    change = write.tables["items"]
    assert reverted.tables == {"items": udr.TableChange(change.deleted, change.updated, change.inserted)}
    expected = [*as_rows(before), (99, "other", 0, 0.0)]
    assert table_rows(lake) == sorted(expected)


def test_revert_restores_only_its_cells_when_later_commits_changed_others(lake: udr.Lake) -> None:
    write = lake.upsert("items", items((1, "APPLE", 10, 1.0), (2, "pear", 25, 2.0)))
    lake.upsert("items", items((1, "APPLE", 10, 1.5), (3, "plum", 0, 3.0)))
    lake.revert(write)
    assert table_rows(lake) == [(1, "apple", 10, 1.5), (2, "pear", 20, 2.0), (3, "plum", 0, 3.0), (4, "fig", 40, 4.0)]


def test_revert_conflicts_when_a_later_commit_changed_the_same_cells(lake: udr.Lake) -> None:
    write = lake.upsert("items", items((1, "apple", 11, 1.0)))
    lake.upsert("items", items((1, "apple", 12, 1.0)))
    head = lake.resolve("main")
    with pytest.raises(udr.MergeConflict) as info:
        lake.revert(write.id)
    assert [(c.key, c.column) for c in info.value.conflicts] == [({"id": 1}, "qty")]
    assert lake.resolve("main") == head


def test_reverting_twice_round_trips(lake: udr.Lake) -> None:
    write = lake.overwrite("items", items((1, "apple", 1, 1.0), (9, "nut", 9, 9.0)))
    after = table_rows(lake)
    undo = lake.revert(write)
    assert table_rows(lake) == as_rows(BASE)
    lake.revert(undo)
    assert table_rows(lake) == after


def test_revert_of_a_table_creation_drops_it_and_the_root_cannot_be_reverted(db: udr.Lake) -> None:
    made = db.append("t", {"x": [1]})
    db.append("u", {"x": [1]})
    db.revert(made)
    assert db.tables() == ["u"]
    with pytest.raises(udr.UsageError, match="root"):
        db.revert(db.log()[-1].id)
    with pytest.raises(udr.RefNotFound):
        db.revert("nope")


def test_reverting_a_commit_that_is_not_on_the_branch_is_refused(lake: udr.Lake) -> None:
    elsewhere = lake.upsert("items", items((1, "dev", 1, 1.0), (7, "date", 7, 7.0)), branch="dev")
    lake.upsert("items", items((2, "pear", 0, 2.0)))
    with pytest.raises(udr.UsageError):
        lake.revert(elsewhere.id)


def test_revert_on_a_branch_leaves_main_alone(lake: udr.Lake) -> None:
    write = lake.upsert("items", items((1, "x", 1, 1.0)), branch="dev")
    lake.revert(write.id, branch="dev")
    assert table_rows(lake, branch="dev") == as_rows(BASE)
    assert lake.resolve("main") == lake.log("dev")[2].id


# -- processes -------------------------------------------------------------------------------------------------

BRANCH_WRITER = textwrap.dedent("""
    import sys
    import udr
    with udr.open(sys.argv[1]) as db:
        db.upsert("items", {"id": [2, 6], "name": ["PEAR", "yuzu"], "qty": [2, 6], "price": [2.0, 6.0]},
                  branch="feature")
        db.delete("items", keys={"id": [3]}, branch="feature")
        db.append("notes", {"n": ["from the child"]}, branch="feature")
        print(db.resolve("feature"), db.resolve("main"))
""")


def test_a_branch_written_by_another_process_is_invisible_on_main(lake: udr.Lake, lake_path: Path) -> None:
    lake.create_branch("feature")
    main_before = lake.resolve("main")
    lake.read("items", branch="feature")
    done = subprocess.run([sys.executable, "-c", BRANCH_WRITER, str(lake_path)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    feature_head, main_seen = done.stdout.split()
    assert main_seen == main_before
    # The handle opened before the child wrote sees the new branch head, and main unchanged.
    assert lake.resolve("main") == main_before
    assert table_rows(lake) == as_rows(BASE)
    assert lake.tables() == ["items"]
    assert lake.resolve("feature") == feature_head
    assert table_rows(lake, branch="feature") == [(1, "apple", 10, 1.0), (2, "PEAR", 2, 2.0), (4, "fig", 40, 4.0),
                                                  (6, "yuzu", 6, 6.0)]
    with udr.open(lake_path) as fresh:
        assert table_rows(fresh) == as_rows(BASE)
        assert fresh.read("notes", branch="feature").column("n").to_pylist() == ["from the child"]
    lake.merge("feature")
    assert lake.resolve("main") == feature_head


# -- gc with many branches -------------------------------------------------------------------------------------


def test_gc_keeps_every_chunk_any_commit_needs_across_branches_resets_and_deletions(
    db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table], chunk_files: Callable[[Path], list[Path]]
) -> None:
    base = make_big(100)
    db.create_table("big", base.schema, primary_key=["a"])
    db.append("big", base)
    expected: dict[str, int] = {}  # commit id -> sum of column b at that commit (a signature of its rows)
    heads: list[str] = []
    for n in range(10):
        name = f"b{n}"
        db.create_branch(name)
        db.upsert("big", make_big(n), branch=name)  # a Parquet chunk file per branch
        db.delete("big", keys={"a": base.column("a").to_pylist()[n * 10:(n + 1) * 10]}, branch=name)
        if n % 3 == 0:
            db.overwrite("big", make_big(200 + n, rows=25_000), branch=name)
        heads.append(db.resolve(name))
    assert len(chunk_files(lake_path)) >= 11
    # Garbage too: a chunk file from an aborted transaction.
    tx = db.transaction()
    tx.append("big", make_big(999))
    tx.abort()
    for branch in db.branches():
        for commit in db.log(branch):
            if "big" in db.tables(at=commit.id):
                expected[commit.id] = pc.sum(db.read("big", at=commit.id, columns=["b"]).column("b")).as_py()
    # Delete half the branches (unmerged: forced), reset the others to main, and move main back to the root.
    for n in range(0, 10, 2):
        db.delete_branch(f"b{n}", force=True)
    for n in range(1, 10, 2):
        db.reset(f"b{n}", to="main")
    db.reset("main", to=db.log()[-1].id)
    freed = db.gc()
    assert freed > 0, "gc found no garbage: the test would prove nothing"
    report = db.verify()
    assert report.ok, report.problems
    for cid, signature in expected.items():
        assert pc.sum(db.read("big", at=cid, columns=["b"]).column("b")).as_py() == signature, cid[:10]
    for head in heads:
        assert head in expected
