"""udr.query.smalldiff: the keyed diff of a few rows in Python equals `keyed_diff`'s, before-image included."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.errors import KeyViolation
from udr.materialize.currentrows import CurrentRows
from udr.query.diff import KeyedDiff, keyed_diff
from udr.query.smalldiff import SMALL_ROWS, small_keyed_diff

SCHEMA = pa.schema([
    pa.field("k", pa.int64(), nullable=False), ("f", pa.float64()), ("s", pa.string()),
    ("t", pa.timestamp("us", "UTC")), ("d", pa.decimal128(10, 2)), ("b", pa.bool_()), ("i", pa.int32()),
])
FLOATS = [0.0, -0.0, 1.5, math.nan, None]
STRINGS = ["a", "b", "", None]
TIMES = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC), None]
DECIMALS = [Decimal("1.00"), Decimal("2.50"), None]


def _row(key: int, draw: st.DrawFn) -> dict[str, object]:
    return {"k": key, "f": draw(st.sampled_from(FLOATS)), "s": draw(st.sampled_from(STRINGS)),
            "t": draw(st.sampled_from(TIMES)), "d": draw(st.sampled_from(DECIMALS)),
            "b": draw(st.sampled_from([True, False, None])), "i": draw(st.sampled_from([1, 2, None]))}


@st.composite
def cases(draw: st.DrawFn) -> tuple[CurrentRows, pa.Table]:
    """Stored rows (a key may repeat among deleted rows: a live row has each key once) and new rows."""
    stored_keys = draw(st.lists(st.integers(0, 12), max_size=12))
    live = [draw(st.booleans()) for _ in stored_keys]
    seen: set[int] = set()
    for at, key in enumerate(stored_keys):
        if live[at] and key in seen:
            live[at] = False
        seen |= {key} if live[at] else set()
    old = pa.Table.from_pylist([_row(k, draw) for k in stored_keys], SCHEMA)
    new_keys = draw(st.lists(st.integers(0, 12), max_size=10, unique=True))
    new = pa.Table.from_pylist([_row(k, draw) for k in new_keys], SCHEMA)
    return CurrentRows(old, live=np.array(live, dtype=bool)), new


def _same(a: KeyedDiff, b: KeyedDiff) -> None:
    assert a.before is not None and b.before is not None
    for mine, theirs in [(a.inserted, b.inserted), (a.updated, b.updated), (a.replaced, b.replaced),
                         (a.removed, b.removed), (a.before, b.before)]:
        assert mine.schema.equals(theirs.schema)
        assert _rows(mine) == _rows(theirs)


def _rows(table: pa.Table) -> list[dict[str, object]]:
    """The rows, NaN as a string (dicts compare NaN unequal to itself)."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in table.to_pylist()]


@settings(max_examples=300, deadline=None)
@given(cases(), st.booleans())
def test_the_small_diff_equals_the_vectorized_one(case: tuple[CurrentRows, pa.Table], remove_missing: bool) -> None:
    old, new = case
    small = small_keyed_diff(old, new, ["k"], table="t", remove_missing=remove_missing)
    assert small is not None
    _same(small, keyed_diff(old, new, ["k"], table="t", remove_missing=remove_missing))


def test_rows_located_one_by_one_keep_their_fragment_and_position() -> None:
    rows = pa.table({"k": pa.array([5, 7], pa.int64()), "v": [1, 2], "__frag": pa.array([3, 0], pa.uint32()),
                     "__pos": pa.array([9, 4], pa.uint32())})
    old = CurrentRows.from_positioned(rows)
    diff = small_keyed_diff(old, pa.table({"k": pa.array([7, 8], pa.int64()), "v": [3, 4]}), ["k"], table="t",
                            remove_missing=True)
    assert diff is not None
    assert diff.updated.to_pylist() == [{"k": 7, "v": 3}] and diff.inserted.to_pylist() == [{"k": 8, "v": 4}]
    assert diff.replaced.to_pylist() == [{"__frag": 0, "__pos": 4}]
    assert diff.removed.to_pylist() == [{"__frag": 3, "__pos": 9}]
    assert diff.before is not None
    assert diff.before.to_pylist() == [{"k": 7, "__mask": 1, "__deleted": False, "v": 2},
                                       {"k": 5, "__mask": 1, "__deleted": True, "v": 1}]


def test_a_null_or_repeated_new_key_is_rejected() -> None:
    old = CurrentRows(pa.table({"k": pa.array([1], pa.int64()), "v": [1]}))
    with pytest.raises(KeyViolation, match="null in primary key"):
        small_keyed_diff(old, pa.table({"k": pa.array([None], pa.int64()), "v": [1]}), ["k"], table="t",
                         remove_missing=False)
    with pytest.raises(KeyViolation, match=r"duplicate primary key \{'k': 2\}"):
        small_keyed_diff(old, pa.table({"k": pa.array([2, 3, 2], pa.int64()), "v": [1, 2, 3]}), ["k"], table="t",
                         remove_missing=False)


@pytest.mark.parametrize("new", [
    pa.table({"k": pa.array(range(SMALL_ROWS + 1), pa.int64()), "v": [0] * (SMALL_ROWS + 1)}),
    pa.table({"k": [1.0], "v": [0]}),  # float keys: NaN is one key
    pa.table({"k": pa.array([1], pa.int64()), "v": [[1]]}),  # a nested column
    pa.table({"k": pa.array([1], pa.int64()), "v": pa.array([0], pa.int32())}),  # stored as int64
])
def test_what_it_does_not_compare_is_left_to_the_vectorized_diff(new: pa.Table) -> None:
    old = CurrentRows(pa.table({"k": pa.array([1], new.schema.field("k").type), "v": pa.array([0], pa.int64())}))
    if pa.types.is_list(new.schema.field("v").type):
        old = CurrentRows(pa.table({"k": pa.array([1], pa.int64()), "v": [[0]]}))
    assert small_keyed_diff(old, new, ["k"], table="t", remove_missing=False) is None
