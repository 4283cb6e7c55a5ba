"""`udr.materialize.merge.merge_rows`: the pure row- and cell-level three-way merge of one keyed table.

Inputs are change tables (base -> ours, base -> theirs) as the change feed builds them; the output is what
to apply on top of ours: keys to remove, rows to add, and the conflicts.
"""

from __future__ import annotations

import math
from typing import cast

import pyarrow as pa
import pytest

import udr
from udr.materialize.merge import RowMerge, merge_rows

SCHEMA = pa.schema([("id", pa.int64()), ("s", pa.string()), ("f", pa.float64()), ("n", pa.int64())])
KEY = ["id"]

Row = dict[str, object]


def row(id: int, s: str | None = "x", f: float | None = 1.0, n: int | None = 0) -> Row:
    return {"id": id, "s": s, "f": f, "n": n}


def feed(*entries: tuple[str, Row] | tuple[str, Row, Row], schema: pa.Schema = SCHEMA) -> pa.Table:
    """A change table from ("insert", row), ("delete", row) and ("update", before, after) entries."""
    rows: list[Row] = []
    for entry in entries:
        if len(entry) == 3:
            rows += [{**entry[1], "_change": "update_before"}, {**entry[2], "_change": "update_after"}]
        else:
            rows.append({**entry[1], "_change": entry[0]})
    return pa.Table.from_pylist(rows, schema=schema.append(pa.field("_change", pa.string())))


def merge(ours: pa.Table, theirs: pa.Table, strategy: str | None = None, schema: pa.Schema = SCHEMA,
          key: list[str] = KEY) -> RowMerge:
    return merge_rows("t", schema, key, ours, theirs, strategy=strategy)


def removed(result: RowMerge) -> list[Row]:
    rows: list[Row] = result.remove.to_pylist()
    return rows


def added(result: RowMerge) -> list[Row]:
    rows: list[Row] = result.add.to_pylist()
    return rows


def ids(rows: list[Row]) -> list[int]:
    """The ids of `rows`, sorted (the rows of these tests have int ids)."""
    return sorted(cast(int, r["id"]) for r in rows)


def same(a: object, b: object) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


# -- one side only --------------------------------------------------------------------------------------


def test_a_row_only_theirs_changed_replaces_ours() -> None:
    result = merge(feed(("update", row(2), row(2, s="mine"))), feed(("update", row(1), row(1, s="theirs"))))
    assert removed(result) == [{"id": 1}]
    assert added(result) == [row(1, s="theirs")]
    assert result.conflicts == []


def test_a_row_only_theirs_inserted_is_added_and_nothing_removed() -> None:
    result = merge(feed(), feed(("insert", row(7))))
    assert removed(result) == []
    assert added(result) == [row(7)]


def test_a_row_only_theirs_deleted_is_removed() -> None:
    result = merge(feed(("insert", row(8))), feed(("delete", row(1))))
    assert removed(result) == [{"id": 1}]
    assert added(result) == []


def test_rows_only_ours_changed_need_nothing() -> None:
    result = merge(feed(("update", row(1), row(1, s="mine")), ("delete", row(2)), ("insert", row(3))), feed())
    assert (removed(result), added(result), result.conflicts) == ([], [], [])


def test_output_tables_have_the_key_and_the_full_schema() -> None:
    result = merge(feed(), feed())
    assert result.remove.schema == pa.schema([SCHEMA.field("id")])
    assert result.add.schema == SCHEMA


# -- both sides, cleanly ---------------------------------------------------------------------------------


def test_different_columns_of_one_row_merge_into_one_row() -> None:
    base = row(1, s="b", f=1.0, n=0)
    result = merge(feed(("update", base, {**base, "s": "mine"})), feed(("update", base, {**base, "n": 5})))
    assert removed(result) == [{"id": 1}]
    assert added(result) == [row(1, s="mine", f=1.0, n=5)]
    assert result.conflicts == []


def test_the_same_change_on_both_sides_needs_nothing() -> None:
    base = row(1)
    change = {**base, "s": "same", "f": math.nan}
    for ours, theirs in [
        (feed(("update", base, change)), feed(("update", base, change))),
        (feed(("delete", base)), feed(("delete", base))),
        (feed(("insert", row(9, n=None))), feed(("insert", row(9, n=None)))),
    ]:
        result = merge(ours, theirs)
        assert (removed(result), added(result), result.conflicts) == ([], [], [])


def test_nan_equals_nan_and_null_equals_null_when_deciding_who_changed_a_cell() -> None:
    base = row(1, s=None, f=math.nan, n=None)
    # Ours left the NaN and the NULLs alone; theirs changed them: theirs wins, no conflict.
    result = merge(feed(("update", base, {**base, "n": 1})), feed(("update", base, {**base, "f": 2.0, "s": "t"})))
    assert result.conflicts == []
    [merged] = added(result)
    assert merged == row(1, s="t", f=2.0, n=1)
    # Ours set a cell to NULL and theirs left it: ours wins.
    base = row(2, s="x")
    result = merge(feed(("update", base, {**base, "s": None})), feed(("update", base, {**base, "n": 9})))
    assert added(result) == [row(2, s=None, n=9)]


# -- conflicts ------------------------------------------------------------------------------------------


def test_the_same_cell_changed_to_different_values_is_a_conflict_naming_all_three_values() -> None:
    base = row(1, s="base")
    result = merge(feed(("update", base, {**base, "s": "mine"})), feed(("update", base, {**base, "s": "theirs"})))
    assert result.conflicts == [udr.Conflict("t", {"id": 1}, "s", "base", "mine", "theirs")]
    assert (removed(result), added(result)) == ([], [])


def test_every_conflicting_cell_of_a_row_is_reported() -> None:
    base = row(1, s="b", f=1.0, n=1)
    result = merge(feed(("update", base, row(1, s="o", f=2.0, n=1))), feed(("update", base, row(1, s="t", f=3.0, n=1))))
    assert sorted((c.column, c.ours, c.theirs) for c in result.conflicts) == [("f", 2.0, 3.0), ("s", "o", "t")]


def test_a_conflicting_row_is_left_as_ours_even_where_other_cells_merge() -> None:
    base = row(1, s="b", f=1.0, n=1)
    result = merge(feed(("update", base, row(1, s="o", f=1.0, n=1))), feed(("update", base, row(1, s="t", f=1.0, n=7))))
    assert [c.column for c in result.conflicts] == ["s"]
    assert (removed(result), added(result)) == ([], [])


@pytest.mark.parametrize("who_deletes", ["ours", "theirs"])
def test_delete_against_update_is_a_whole_row_conflict(who_deletes: str) -> None:
    base = row(1)
    changed = row(1, s="new")
    deleting, updating = feed(("delete", base)), feed(("update", base, changed))
    ours, theirs = (deleting, updating) if who_deletes == "ours" else (updating, deleting)
    result = merge(ours, theirs)
    expected_ours, expected_theirs = (None, changed) if who_deletes == "ours" else (changed, None)
    assert result.conflicts == [udr.Conflict("t", {"id": 1}, None, base, expected_ours, expected_theirs)]
    assert (removed(result), added(result)) == ([], [])


def test_both_sides_inserting_a_key_with_different_values_conflict() -> None:
    result = merge(feed(("insert", row(5, s="o"))), feed(("insert", row(5, s="t"))))
    assert [(c.key, c.column, c.base, c.ours, c.theirs) for c in result.conflicts] == [({"id": 5}, "s", None, "o", "t")]


def test_both_sides_inserting_a_key_where_ours_is_null_conflicts() -> None:
    result = merge(feed(("insert", row(5, s=None))), feed(("insert", row(5, s="t"))))
    assert [(c.column, c.ours, c.theirs) for c in result.conflicts] == [("s", None, "t")]


def test_both_sides_inserting_a_key_where_theirs_is_null_conflicts() -> None:
    result = merge(feed(("insert", row(5, s="o"))), feed(("insert", row(5, s=None))))
    assert [(c.column, c.ours, c.theirs) for c in result.conflicts] == [("s", "o", None)]


def test_both_sides_inserting_a_key_with_strategy_theirs_takes_theirs_nulls_too() -> None:
    result = merge(feed(("insert", row(5, s="o"))), feed(("insert", row(5, s=None))), strategy="theirs")
    assert result.conflicts == []
    assert added(result) == [row(5, s=None)]


def test_a_column_only_ours_has_merges_with_theirs_changes_to_other_columns() -> None:
    # Ours added column `note` (so the merged schema has it) and filled it; theirs, on the old schema,
    # changed another column of the same row. The base row has no `note`: only ours changed it.
    old = pa.schema([f for f in SCHEMA])
    new = SCHEMA.append(pa.field("note", pa.string()))
    base = row(1)
    result = merge(feed(("update", {**base, "note": None}, {**base, "note": "n1"}), schema=new),
                   feed(("update", base, {**base, "n": 5}), schema=old), schema=new)
    assert result.conflicts == []
    assert added(result) == [{**row(1, n=5), "note": "n1"}]


# -- strategies -------------------------------------------------------------------------------------------


def test_strategy_ours_keeps_ours_in_every_conflict_and_still_merges_the_rest() -> None:
    base1, base2, base3 = row(1, s="b"), row(2), row(3)
    ours = feed(("update", base1, {**base1, "s": "o"}), ("delete", base2))
    theirs = feed(("update", base1, {**base1, "s": "t", "n": 4}), ("update", base2, {**base2, "s": "t"}),
                  ("delete", base3))
    result = merge(ours, theirs, strategy="ours")
    assert result.conflicts == []
    # Row 1: ours keeps its s, but theirs' non-conflicting n merges in. Row 2 stays deleted. Row 3 goes.
    assert ids(removed(result)) == [1, 3]
    assert added(result) == [row(1, s="o", n=4)]


def test_strategy_theirs_takes_theirs_in_every_conflict_and_keeps_ours_elsewhere() -> None:
    base1, base2, base4 = row(1, s="b", n=0), row(2), row(4)
    ours = feed(("update", base1, {**base1, "s": "o", "f": 9.0}), ("delete", base2),
                ("update", base4, {**base4, "s": "o"}))
    theirs = feed(("update", base1, {**base1, "s": "t"}), ("update", base2, {**base2, "s": "t"}), ("delete", base4))
    result = merge(ours, theirs, strategy="theirs")
    assert result.conflicts == []
    assert ids(removed(result)) == [1, 4]
    assert sorted(added(result), key=lambda r: cast(int, r["id"])) == [row(1, s="t", f=9.0, n=0), {**base2, "s": "t"}]


# -- keys ----------------------------------------------------------------------------------------------------


def test_a_composite_key_names_every_key_column_in_conflicts_and_removals() -> None:
    schema = pa.schema([("a", pa.string()), ("b", pa.int64()), ("v", pa.int64())])
    base = {"a": "k", "b": 1, "v": 0}
    result = merge(feed(("update", base, {**base, "v": 1}), schema=schema),
                   feed(("update", base, {**base, "v": 2}), ("delete", {"a": "k", "b": 2, "v": 0}), schema=schema),
                   schema=schema, key=["a", "b"])
    assert [(c.key, c.column) for c in result.conflicts] == [({"a": "k", "b": 1}, "v")]
    assert removed(result) == [{"a": "k", "b": 2}]
    assert result.remove.schema.names == ["a", "b"]


def test_the_merge_is_deterministic() -> None:
    base = [row(i) for i in range(20)]
    ours = feed(*[("update", r, {**r, "s": f"o{i}"}) for i, r in enumerate(base) if i % 2])
    theirs = feed(*[("update", r, {**r, "n": i}) for i, r in enumerate(base) if i % 3])
    first, second = merge(ours, theirs), merge(ours, theirs)
    assert first.add.equals(second.add) and first.remove.equals(second.remove)
    assert all(same(a, b) for x, y in zip(first.add.to_pylist(), second.add.to_pylist())
               for a, b in zip(x.values(), y.values()))
