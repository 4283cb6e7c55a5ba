"""udr.query.aligned: a keyed overwrite whose new rows line up with the first stored rows finds exactly the
changes the general key match finds (the same rows written in another order)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.materialize.currentrows import CurrentRows
from udr.query.aligned import compare_aligned
from udr.query.diff import KeyedDiff, keyed_diff

VALUES = st.one_of(st.none(), st.sampled_from([0.0, 1.5, math.nan, -2.0]))


def stored(base: list[int], base_values: list[float | None], deleted: set[int],
           tail: list[tuple[int | None, float | None, bool]]) -> CurrentRows:
    """A base fragment (keys `base`, rows at `deleted` deleted) then one fragment of (key, value, live) rows."""
    keys = base + [k for k, _, _ in tail]
    values = base_values + [v for _, v, _ in tail]
    live = np.array([i not in deleted for i in range(len(base))] + [alive for _, _, alive in tail], dtype=bool)
    rows = pa.table({"id": pa.array(keys, pa.int64()), "v": pa.array(values, pa.float64())})
    return CurrentRows(rows, None if live.all() else live, starts=np.array([0, len(base), len(keys)], dtype=np.int64))


def lines_up(new: pa.Table, current: CurrentRows) -> bool:
    """Whether `new` lines up with the stored rows (the aligned comparison applies)."""
    found = compare_aligned(new, current.rows, "id", current.live, ["v"], pc.not_equal,
                            lambda differs, names: [differs(c) for c in names])
    return found is not None


def normal(diff: KeyedDiff) -> list[list[tuple[str, ...]]]:
    """The diff's tables with rows sorted (the two paths write the same rows, maybe in another order)."""
    assert diff.before is not None
    tables = [diff.inserted, diff.updated, diff.replaced, diff.removed, diff.before]
    return [sorted(tuple(repr(v) for v in row.values()) for row in t.to_pylist()) for t in tables]


@settings(max_examples=150)
@given(data=st.data(), size=st.integers(2, 30), consecutive=st.booleans())
def test_lined_up_rows_give_the_general_match_s_diff(data: st.DataObject, size: int, consecutive: bool) -> None:
    # Consecutive keys (ids) are found past the head by their distance from the first, others by a search.
    start = data.draw(st.integers(-50, 20))
    base = list(range(start, start + size)) if consecutive else sorted(
        data.draw(st.sets(st.integers(-50, 50), min_size=size, max_size=size)))
    base_values = data.draw(st.lists(VALUES, min_size=size, max_size=size))
    deleted = data.draw(st.sets(st.integers(0, size - 1)))
    # Deleted base rows have a live version in the tail or none; the tail also holds keys the new rows
    # lack (removed), deleted versions (null keys for erased rows) and live keys of its own.
    tail: list[tuple[int | None, float | None, bool]] = [
        (base[i], data.draw(VALUES), True) for i in sorted(deleted) if data.draw(st.booleans())]
    tail += [(k, data.draw(VALUES), data.draw(st.booleans()))
             for k in data.draw(st.sets(st.integers(60, 80) | st.integers(-80, -60), max_size=4))]
    tail += [(None, 1.0, False)] * data.draw(st.integers(0, 2))
    current = stored(base, base_values, deleted, tail)
    new = pa.table({"id": pa.array(base, pa.int64()),
                    "v": pa.array(data.draw(st.lists(VALUES, min_size=size, max_size=size)), pa.float64())})
    assert lines_up(new, current)
    lined_up = keyed_diff(current, new, ["id"], table="t", remove_missing=True)
    reordered = new.take(pa.array(np.arange(size)[::-1].copy()))
    assert not lines_up(reordered, current)
    general = keyed_diff(current, reordered, ["id"], table="t", remove_missing=True)
    assert normal(lined_up) == normal(general)


def test_keys_that_do_not_line_up_are_left_to_the_general_match() -> None:
    rows = CurrentRows(pa.table({"id": [1, 2, 3], "v": [1.0, 2.0, 3.0]}))

    def new(keys: list[int], kind: str = "int64") -> pa.Table:
        return pa.table({"id": pa.array(keys, kind), "v": pa.array([0.0] * len(keys))})

    assert lines_up(new([1, 2]), rows)  # a prefix: row 3 is a stored row past the new ones
    assert not lines_up(new([2, 1]), CurrentRows(rows.rows.take([1, 0, 2])))  # the same order, not increasing
    assert not lines_up(new([1, 3]), rows)  # another key at row 1
    assert not lines_up(new([1, 2, 3, 4]), rows)  # more new rows than stored ones
    assert not lines_up(new([1, 2], "int32"), rows)  # another key type


def test_an_updated_row_s_live_version_past_the_head_is_compared() -> None:
    # Row 1 (key 2) was updated before: its live version is row 3, and it changes again; key 9 is removed.
    current = stored([1, 2, 3], [1.0, 2.0, 3.0], {1}, [(2, 20.0, True), (9, 9.0, True)])
    diff = keyed_diff(current, pa.table({"id": [1, 2, 3], "v": [1.0, 21.0, 3.0]}), ["id"], table="t",
                      remove_missing=True)
    assert diff.updated.to_pylist() == [{"id": 2, "v": 21.0}]
    assert diff.replaced.to_pylist() == [{"__frag": 1, "__pos": 0}]
    assert diff.removed.to_pylist() == [{"__frag": 1, "__pos": 1}]
    assert diff.inserted.num_rows == 0
