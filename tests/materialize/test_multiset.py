from __future__ import annotations

import math
from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.errors import SchemaError
from udr.materialize.multiset import merge_multiset, multiset_delta

SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.float64()), ("c", pa.string())])
_rows = st.lists(
    st.tuples(st.sampled_from([1, 2, None]), st.sampled_from([0.5, math.nan, None]), st.sampled_from(["x", None])),
    max_size=12,
)


def _table(rows: list[tuple[object, ...]]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows], schema=SCHEMA)


def _norm(row: tuple[object, ...]) -> tuple[object, ...]:
    return tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row)


def _bag(table: pa.Table) -> Counter[tuple[object, ...]]:
    return Counter(_norm(tuple(r.values())) for r in table.to_pylist())


def _apply(table: pa.Table, remove: pa.Array, add: pa.Table) -> pa.Table:
    drop = set(remove.to_pylist())
    kept = table.take(pa.array([i for i in range(table.num_rows) if i not in drop], pa.int64()))
    return pa.concat_tables([kept, add])


@given(_rows, _rows)
@settings(max_examples=200)
def test_delta_is_minimal_and_turns_old_into_new(old_rows: list[tuple[object, ...]],
                                                 new_rows: list[tuple[object, ...]]) -> None:
    old, new = _table(old_rows), _table(new_rows)
    delta = multiset_delta(old, new)
    assert _bag(_apply(old, delta.removed_positions_in_old, delta.added)) == _bag(new)
    assert len(delta.removed_positions_in_old) == sum((_bag(old) - _bag(new)).values())
    assert delta.added.num_rows == sum((_bag(new) - _bag(old)).values())


@given(_rows, _rows, _rows)
@settings(max_examples=200)
def test_merge_matches_the_model(base_rows: list[tuple[object, ...]], our_rows: list[tuple[object, ...]],
                                 their_rows: list[tuple[object, ...]]) -> None:
    base, ours, theirs = _table(base_rows), _table(our_rows), _table(their_rows)
    b, o, t = _bag(base), _bag(ours), _bag(theirs)
    expected = {row: o[row] + t[row] - b[row] for row in b | o | t}
    merged = merge_multiset(base, ours, theirs, table="ev")
    over_removed = {row for row, n in expected.items() if n < 0}
    assert {_norm(tuple(c.key.values())) for c in merged.conflicts if c.key is not None} == over_removed
    if not over_removed:
        result = _apply(ours, merged.remove_positions_in_ours, merged.add)
        assert _bag(result) == Counter({row: n for row, n in expected.items() if n > 0})


def test_identical_tables_have_an_empty_delta() -> None:
    table = _table([(1, 0.5, "x"), (1, 0.5, "x"), (None, math.nan, None)])
    delta = multiset_delta(table, table)
    assert len(delta.removed_positions_in_old) == 0 and delta.added.num_rows == 0


def test_the_later_copies_of_a_duplicate_are_removed() -> None:
    old = _table([(1, 0.5, "x"), (2, 0.5, "x"), (1, 0.5, "x"), (1, 0.5, "x")])
    assert multiset_delta(old, _table([(1, 0.5, "x"), (2, 0.5, "x")])).removed_positions_in_old.to_pylist() == [2, 3]


def test_both_sides_removing_the_only_copy_conflict_names_table_and_row() -> None:
    base = _table([(1, 0.5, "x"), (2, 0.5, "x")])
    merged = merge_multiset(base, _table([(2, 0.5, "x")]), _table([(2, 0.5, "x")]), table="ev")
    assert [(c.table, c.key, c.base, c.ours, c.theirs) for c in merged.conflicts] == [
        ("ev", {"a": 1, "b": 0.5, "c": "x"}, 1, 0, 0)]


def test_appends_on_both_sides_are_all_kept() -> None:
    base = _table([(1, 0.5, "x")])
    ours = _table([(1, 0.5, "x"), (2, 0.5, "x")])
    theirs = _table([(1, 0.5, "x"), (2, 0.5, "x"), (3, 0.5, None)])
    merged = merge_multiset(base, ours, theirs)
    assert _bag(_apply(ours, merged.remove_positions_in_ours, merged.add)) == Counter(
        {(1, 0.5, "x"): 1, (2, 0.5, "x"): 2, (3, 0.5, None): 1})


def test_different_columns_are_rejected() -> None:
    with pytest.raises(SchemaError, match="same columns"):
        multiset_delta(_table([]), pa.table({"a": [1]}))
