"""udr.query.diff: what a keyed write changes, row by row, with NULL and NaN compared as equal to themselves."""

from __future__ import annotations

import math
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.errors import KeyViolation
from udr.materialize.currentrows import CurrentRows
from udr.query.diff import keyed_diff, matching_keys, upsert_hits

NAN = math.nan


def old_rows(**columns: list[object]) -> CurrentRows:
    """Current rows: every row sits in fragment 0 at its index."""
    return CurrentRows(pa.table(columns))


def positions(table: pa.Table) -> list[tuple[int, int]]:
    return sorted(zip(table.column("__frag").to_pylist(), table.column("__pos").to_pylist(), strict=True))


OLD = old_rows(id=[1, 2, 3], v=["a", "b", "c"])


def test_identical_rows_are_no_change() -> None:
    diff = keyed_diff(OLD, pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]}), ["id"], table="t", remove_missing=True)
    counts = (diff.inserted.num_rows, diff.updated.num_rows, diff.replaced.num_rows, diff.removed.num_rows)
    assert counts == (0, 0, 0, 0)


def test_new_keys_are_inserted_changed_rows_updated_and_their_old_versions_replaced() -> None:
    new = pa.table({"id": [2, 4, 1], "v": ["B", "d", "a"]})
    diff = keyed_diff(OLD, new, ["id"], table="t", remove_missing=False)
    assert diff.inserted.to_pylist() == [{"id": 4, "v": "d"}]
    assert diff.updated.to_pylist() == [{"id": 2, "v": "B"}]
    assert positions(diff.replaced) == [(0, 1)]
    assert diff.removed.num_rows == 0
    assert diff.inserted.schema.equals(new.schema)


def test_remove_missing_removes_keys_absent_from_the_new_rows() -> None:
    diff = keyed_diff(OLD, pa.table({"id": [2], "v": ["b"]}), ["id"], table="t", remove_missing=True)
    assert positions(diff.removed) == [(0, 0), (0, 2)]
    assert diff.inserted.num_rows == diff.updated.num_rows == 0


def test_null_equals_null_and_differs_from_a_value() -> None:
    old = old_rows(id=[1, 2, 3], v=[None, None, "c"])
    diff = keyed_diff(old, pa.table({"id": [1, 2, 3], "v": [None, "now set", None]}), ["id"], table="t",
                      remove_missing=True)
    assert sorted(diff.updated.column("id").to_pylist()) == [2, 3]
    assert positions(diff.replaced) == [(0, 1), (0, 2)]


def test_nan_equals_nan_and_differs_from_a_number_and_from_null() -> None:
    old = old_rows(id=[1, 2, 3, 4], x=[NAN, NAN, NAN, 1.5])
    new = pa.table({"id": [1, 2, 3, 4], "x": pa.array([NAN, 0.0, None, 1.5], pa.float64())})
    diff = keyed_diff(old, new, ["id"], table="t", remove_missing=True)
    assert sorted(diff.updated.column("id").to_pylist()) == [2, 3]
    assert diff.inserted.num_rows == 0


def test_nan_key_matches_nan_key() -> None:
    old = old_rows(k=[NAN, 1.0], v=[1, 2])
    diff = keyed_diff(old, pa.table({"k": [NAN, 1.0], "v": [1, 3]}), ["k"], table="t", remove_missing=True)
    assert diff.inserted.num_rows == 0
    assert diff.updated.to_pylist() == [{"k": 1.0, "v": 3}]
    assert diff.removed.num_rows == 0


def test_composite_keys_match_on_every_column() -> None:
    old = old_rows(a=[1, 1, 2], b=["x", "y", "x"], v=[10, 20, 30])
    new = pa.table({"a": [1, 2, 2], "b": ["y", "x", "y"], "v": [20, 31, 40]})
    diff = keyed_diff(old, new, ["a", "b"], table="t", remove_missing=True)
    assert diff.inserted.to_pylist() == [{"a": 2, "b": "y", "v": 40}]
    assert diff.updated.to_pylist() == [{"a": 2, "b": "x", "v": 31}]
    assert positions(diff.replaced) == [(0, 2)]
    assert positions(diff.removed) == [(0, 0)]


def test_a_table_of_only_key_columns_has_no_updates() -> None:
    old = old_rows(id=[1, 2])
    diff = keyed_diff(old, pa.table({"id": [2, 3]}), ["id"], table="t", remove_missing=True)
    assert diff.inserted.to_pylist() == [{"id": 3}]
    assert diff.updated.num_rows == 0
    assert positions(diff.removed) == [(0, 0)]


def test_diff_against_an_empty_table_inserts_everything() -> None:
    empty = old_rows(id=pa.array([], pa.int64()), v=pa.array([], pa.string()))
    new = pa.table({"id": [1, 2], "v": ["a", "b"]})
    diff = keyed_diff(empty, new, ["id"], table="t", remove_missing=True)
    assert diff.inserted.num_rows == 2 and diff.removed.num_rows == 0


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (pa.table({"id": [1, None], "v": ["a", "b"]}), "null"),
        (pa.table({"id": [5, 5], "v": ["a", "b"]}), "duplicate"),
    ],
)
def test_bad_keys_in_the_new_rows_are_a_key_violation_naming_the_table(new: pa.Table, message: str) -> None:
    with pytest.raises(KeyViolation, match=f"'orders'.*{message}|{message}.*'orders'"):
        keyed_diff(OLD, new, ["id"], table="orders", remove_missing=False)


@pytest.mark.parametrize("keys", [[7, -3, 7], [2**62, -(2**62), 2**62]], ids=["dense", "sparse"])
def test_a_repeated_integer_key_is_named(keys: list[int]) -> None:
    old = old_rows(id=[1, 2, 3], v=["a", "b", "c"])
    with pytest.raises(KeyViolation, match=f"duplicate primary key {{'id': {keys[0]}}}"):
        keyed_diff(old, pa.table({"id": keys, "v": ["x", "y", "z"]}), ["id"], table="t", remove_missing=True)


def test_matching_keys_finds_rows_by_key() -> None:
    hits = matching_keys(OLD.positioned(), pa.table({"id": [3, 1, 99], "ignored": [0, 0, 0]}), ["id"], table="t")
    assert positions(hits) == [(0, 0), (0, 2)]


# -- one meaning, whichever way the diff is computed ------------------------------------------------------
# A single flat key takes a vectorized path; a composite key goes through DuckDB. Both must mean the same.


def _norm(value: object) -> object:
    """A hashable stand-in with NULL and NaN each equal to themselves."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return ("NULL",) if value is None else value


def _oracle(old: list[tuple[object, object, object]], new: list[tuple[object, object, object]]
            ) -> tuple[set[object], set[object], set[int], set[int]]:
    """(inserted keys, updated keys, replaced positions, removed positions) by the documented rules."""
    by_key = {_norm(k): (pos, (_norm(x), _norm(s))) for pos, (k, x, s) in enumerate(old)}
    new_keys = {_norm(k) for k, _, _ in new}
    inserted, updated, replaced = set(), set(), set()
    for k, x, s in new:
        hit = by_key.get(_norm(k))
        if hit is None:
            inserted.add(_norm(k))
        elif hit[1] != (_norm(x), _norm(s)):
            updated.add(_norm(k))
            replaced.add(hit[0])
    removed = {pos for key, (pos, _) in by_key.items() if key not in new_keys}
    return inserted, updated, replaced, removed


def _observed(diff: object) -> tuple[set[object], set[object], set[int], set[int]]:
    return (
        {_norm(k) for k in diff.inserted.column("k").to_pylist()},  # type: ignore[attr-defined]
        {_norm(k) for k in diff.updated.column("k").to_pylist()},  # type: ignore[attr-defined]
        set(diff.replaced.column("__pos").to_pylist()),  # type: ignore[attr-defined]
        set(diff.removed.column("__pos").to_pylist()),  # type: ignore[attr-defined]
    )


_key_kinds = {
    "int": (pa.int64(), st.integers(-3, 6)),  # dense: matched through a direct-address table
    "sparse int": (pa.int64(), st.sampled_from([-(2**63), -5, 0, 3, 2**40, 2**63 - 1])),  # matched by sorting
    "uint": (pa.uint64(), st.sampled_from([0, 1, 2**63 + 5, 2**64 - 1])),
    "string": (pa.string(), st.sampled_from(["a", "b", "c", "", "é", "z"])),
    "float": (pa.float64(), st.sampled_from([0.0, 1.5, -2.0, math.inf, math.nan])),
}
_x = st.sampled_from([None, math.nan, 0.0, 1.5])
_s = st.sampled_from([None, "a", "b"])


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, list[tuple[object, object, object]], list[tuple[object, object, object]]]:
    kind = draw(st.sampled_from(sorted(_key_kinds)))
    keys = _key_kinds[kind][1]
    old_keys = draw(st.lists(keys, unique_by=_norm, max_size=6))
    new_keys = draw(st.lists(keys, unique_by=_norm, max_size=6))
    old: list[tuple[object, object, object]] = [(k, draw(_x), draw(_s)) for k in old_keys]
    new: list[tuple[object, object, object]] = [(k, draw(_x), draw(_s)) for k in new_keys]
    return kind, old, new


def _tables(kind: str, rows: list[tuple[object, object, object]], composite: bool) -> pa.Table:
    columns = {
        "k": pa.array([r[0] for r in rows], _key_kinds[kind][0]),
        "x": pa.array([r[1] for r in rows], pa.float64()),
        "s": pa.array([r[2] for r in rows], pa.string()),
    }
    if composite:
        columns["c"] = pa.array([0] * len(rows), pa.int64())
    return pa.table(columns)


@settings(max_examples=25)  # each composite case opens a DuckDB connection (~50 ms)
@given(_cases(), st.booleans())
def test_single_and_composite_keys_follow_the_same_rules(
    case: tuple[str, list[tuple[object, object, object]], list[tuple[object, object, object]]], remove_missing: bool,
) -> None:
    kind, old, new = case
    expected = _oracle(old, new)
    if not remove_missing:
        expected = (*expected[:3], set())
    for composite in (False, True):
        old_table = CurrentRows(_tables(kind, old, composite))
        key = ["k", "c"] if composite else ["k"]
        diff = keyed_diff(old_table, _tables(kind, new, composite), key, table="t", remove_missing=remove_missing)
        assert _observed(diff) == expected, "composite" if composite else "single"


def test_negative_zero_and_zero_keys_in_one_write_are_a_duplicate() -> None:
    with pytest.raises(KeyViolation, match="duplicate"):
        keyed_diff(old_rows(k=[1.0], v=[1]), pa.table({"k": [0.0, -0.0], "v": [1, 2]}), ["k"], table="t",
                   remove_missing=False)


def test_negative_zero_key_matches_zero_as_in_sql() -> None:
    old = old_rows(k=[0.0], v=[1])
    diff = keyed_diff(old, pa.table({"k": [-0.0], "v": [1]}), ["k"], table="t", remove_missing=False)
    assert diff.inserted.num_rows == 0


# -- current rows with deleted rows, over several fragments -----------------------------------------------
# A keyed write reads every stored row (deleted ones too) and marks the live ones: a deleted row, often the
# old version of a live row with the same key, must never match, be replaced or be removed.


@st.composite
def _stored(draw: st.DrawFn) -> tuple[str, list[tuple[object, object, object, bool]],
                                      list[tuple[object, object, object]]]:
    kind, old, new = draw(_cases())
    # Deleted copies of some keys (stale versions) anywhere among the stored rows.
    stale = [(k, draw(_x), draw(_s), False) for k, _, _ in old if draw(st.booleans())]
    stored = [(k, x, s, True) for k, x, s in old] + stale
    order = draw(st.permutations(range(len(stored))))
    return kind, [stored[i] for i in order], new


@settings(max_examples=60)
@given(_stored(), st.booleans(), st.integers(0, 6))
def test_deleted_rows_never_match_and_places_span_fragments(
    case: tuple[str, list[tuple[object, object, object, bool]], list[tuple[object, object, object]]],
    remove_missing: bool, split: int,
) -> None:
    kind, stored, new = case
    live_rows = [(i, r[:3]) for i, r in enumerate(stored) if r[3]]
    cut = min(split, len(stored))  # fragment 0 holds rows [0, cut), fragment 1 the rest

    def place(i: int) -> tuple[int, int]:
        return (0, i) if i < cut else (1, i - cut)

    by_key = {_norm(r[0]): (i, (_norm(r[1]), _norm(r[2]))) for i, r in live_rows}
    new_keys = {_norm(k) for k, _, _ in new}
    updated = {_norm(k) for k, x, s in new if _norm(k) in by_key and by_key[_norm(k)][1] != (_norm(x), _norm(s))}
    expected = (
        {_norm(k) for k, _, _ in new if _norm(k) not in by_key},
        updated,
        sorted(place(by_key[k][0]) for k in updated),
        sorted(place(i) for key, (i, _) in by_key.items() if key not in new_keys) if remove_missing else [],
    )
    for composite in (False, True):
        rows = _tables(kind, [r[:3] for r in stored], composite)
        current = CurrentRows(rows, live=np.array([r[3] for r in stored], dtype=bool),
                              starts=np.array([0, cut, len(stored)], dtype=np.int64))
        key = ["k", "c"] if composite else ["k"]
        diff = keyed_diff(current, _tables(kind, new, composite), key, table="t", remove_missing=remove_missing)
        observed = (
            {_norm(k) for k in diff.inserted.column("k").to_pylist()},
            {_norm(k) for k in diff.updated.column("k").to_pylist()},
            positions(diff.replaced),
            positions(diff.removed),
        )
        assert observed == expected, "composite" if composite else "single"


def test_a_deleted_row_with_a_null_key_is_ignored() -> None:
    # Erasure stores an erased row's key as null, and deletes the row.
    rows = pa.table({"id": pa.array([None, 1, 2], pa.int64()), "v": ["secret", "a", "b"]})
    current = CurrentRows(rows, live=np.array([False, True, True]))
    diff = keyed_diff(current, pa.table({"id": [1, 3], "v": ["a", "c"]}), ["id"], table="t", remove_missing=True)
    assert diff.inserted.column("id").to_pylist() == [3]
    assert diff.updated.num_rows == 0
    assert positions(diff.removed) == [(0, 2)]


@pytest.mark.parametrize("kind", [pa.int64(), pa.string(), pa.float64()])  # float keys: through DuckDB
def test_upsert_hits_find_the_live_rows_of_the_written_keys(kind: pa.DataType) -> None:
    # Row 1 is a deleted old version of key 2, whose live version is row 3 (fragment 1, position 0).
    rows = pa.table({"k": pa.array([1, 2, 3, 2], pa.int64()).cast(kind), "v": [10, 20, 30, 21]})
    current = CurrentRows(rows, live=np.array([True, False, True, True]), starts=np.array([0, 3, 4]))
    data = pa.table({"k": pa.array([2, 9, 1], pa.int64()).cast(kind), "v": [0, 0, 0]})
    assert positions(upsert_hits(current, data, ["k"], table="t")) == [(0, 0), (1, 0)]


def test_upsert_hits_reject_a_repeated_key() -> None:
    with pytest.raises(KeyViolation, match=re.escape("duplicate primary key {'id': 2}")):
        upsert_hits(OLD, pa.table({"id": [2, 2], "v": ["x", "y"]}), ["id"], table="t")


@pytest.mark.parametrize(("kind", "keys"), [
    (pa.uint64(), [2**64 - 3, 2**64 - 2, 2**64 - 1]),  # dense near the top of the range
    (pa.int64(), [-(2**63), -(2**63) + 1, -(2**63) + 2]),
    (pa.int8(), [-128, 0, 127]),
    (pa.int64(), [0, 2**40, 2**62]),  # sparse: matched by sorting
])
def test_upsert_hits_over_the_whole_integer_range(kind: pa.DataType, keys: list[int]) -> None:
    current = CurrentRows(pa.table({"k": pa.array(keys, kind), "v": [1, 2, 3]}))
    hits = upsert_hits(current, pa.table({"k": pa.array([keys[2], keys[0]], kind), "v": [0, 0]}), ["k"], table="t")
    assert positions(hits) == [(0, 0), (0, 2)]
