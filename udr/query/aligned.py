"""Keyed overwrites whose new rows line up with the stored rows: the same integer keys, strictly increasing,
as the first stored rows of the table, in the same order.

That is the common case of a refresh: a source delivers its whole table in a stable order every night, the
first load stored it in that order, and later nights stored only changed rows in small fragments after it.
New row i is then compared with stored row i, column against column, without hashing keys or gathering a
column into the new rows' order. Only the new rows whose stored row i is deleted (an earlier write replaced
it: its live version, if any, sits after the first `len(new)` rows) are matched by key and compared apart.

Exact: every value is compared (no hashing of rows); the strictly increasing keys are unique, which is the
duplicate-key check the general match does. Pure functions over numpy and Arrow, safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Element-wise "distinct" of two aligned columns, and a map of a function over column names (in a pool).
Distinct = Callable[[pa.ChunkedArray, pa.ChunkedArray], pa.ChunkedArray]
ColumnMap = Callable[[Callable[[str], pa.ChunkedArray], list[str]], list[pa.ChunkedArray]]


@dataclass(frozen=True, slots=True)
class Compared:
    """What a keyed write of new rows finds against the stored rows, by row index.

    `inserted`: new rows whose key no live row has. `updated`: new rows distinct from their key's live
    row (increasing), `prior` that live row's index among the stored rows, and `hits` per value column
    per updated row whether that value differs. `kept`: per stored row, whether its key is among the new
    keys (deleted rows included: callers mask them out).
    """

    inserted: np.ndarray
    updated: np.ndarray
    prior: np.ndarray
    hits: list[np.ndarray]
    kept: np.ndarray


def compare_aligned(new: pa.Table, stored: pa.Table, key: str, live: np.ndarray | None, values: list[str],
                    distinct: Distinct, columns: ColumnMap) -> Compared | None:
    """`Compared` for `new` rows against every `stored` row (`live`: which are live, None: all) on `key`
    when they line up, else None (the caller matches keys in general). `values` are the columns compared
    with `distinct`, `columns` maps the comparison of one column over them."""
    n = new.num_rows
    lined_up = _align(new.column(key), stored.column(key), live)
    if lined_up is None:
        return None
    where, kept, moved, matched = lined_up

    def head(c: str) -> pa.ChunkedArray:
        return distinct(new.column(c), stored.column(c).slice(0, n).cast(new.schema.field(c).type))

    flags = columns(head, values)
    changed_head = np.flatnonzero(any_of(flags, n) & (np.ones(n, dtype=bool) if live is None else live[:n]))
    # The moved rows with a live row come in the order of those rows: they are read by a filter of the
    # stored rows past the head, chunk by chunk, not gathered from chunks concatenated first.
    tail_mask = np.zeros(len(stored) - n, dtype=bool)
    tail_mask[where[matched] - n] = True
    moved_new = new.select(values).take(pa.array(matched))
    moved_old = stored.slice(n).select(values).filter(pa.array(tail_mask))
    moved_flags = [distinct(moved_new.column(c), moved_old.column(c).cast(new.schema.field(c).type)) for c in values]
    changed_moved = any_of(moved_flags, len(matched))
    updated = np.concatenate([changed_head, matched[changed_moved]])
    order = np.argsort(updated, kind="stable")
    head_rows, moved_rows = pa.array(changed_head), pa.array(changed_moved)
    hits = [np.concatenate([_bools(f.take(head_rows)), _bools(m.filter(moved_rows))])[order]
            for f, m in zip(flags, moved_flags)]
    updated = updated[order]
    return Compared(moved[where[moved] < 0], updated, where[updated], hits, kept)


def _align(new: pa.ChunkedArray, stored: pa.ChunkedArray,
           live: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """For new keys `new` lined up with the first stored keys `stored`: per new row its live stored row
    (-1: none), per stored row whether its key is among the new keys (deleted rows: any), the new rows
    whose stored row is deleted ("moved"), and those of them that have a live row, in the order of those
    rows. None when they do not line up."""
    n = len(new)
    if n < 2 or len(stored) < n or not pa.types.is_integer(new.type) or not new.type.equals(stored.type):
        return None
    head = stored.slice(0, n)
    if new.null_count or head.null_count:
        return None  # a null new key is an error, an erased row's key a case the general match handles
    # The ends first: rows removed or added in the middle of a table (the general match's case) shift them.
    if new[0] != head[0] or new[n - 1] != head[n - 1]:
        return None
    # Compared in Arrow chunk against chunk: copying the stored keys into one array first cost ~5x as much.
    if not pc.all(pc.equal(new, head)).as_py():
        return None
    keys = np.asarray(new.combine_chunks().to_numpy())
    if not np.all(keys[1:] > keys[:-1]):
        return None
    where = np.arange(n, dtype=np.int64)
    kept = np.zeros(len(stored), dtype=bool)
    kept[:n] = True
    none = np.empty(0, dtype=np.int64)
    moved = none if live is None else np.flatnonzero(~live[:n])
    if not len(moved) or live is None:
        # Every head row live: a live row past the head has a key no new row has (a key has one live row).
        return where, kept, moved, none
    where[moved] = -1
    # Only a live row past the head can hold a moved row's key. Each of those rows is looked up among the
    # new keys (sorted already), in the order of the rows: no sort of the rows past the head, which grow
    # with every refresh that replaces rows.
    live_tail = np.flatnonzero(live[n:])
    tail = np.asarray(stored.slice(n).filter(pa.array(live[n:])).combine_chunks().to_numpy())
    at = _positions_in(keys, tail)
    found = at >= 0
    found[found] = ~live[at[found]]  # a key has one live row: a live head row's key is no moved row's
    matched, rows = at[found], n + live_tail[found]
    where[matched] = rows
    kept[rows] = True
    return where, kept, moved, matched


def _positions_in(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per value of `wanted` its index in the strictly increasing `keys` (-1: not there)."""
    if not len(wanted):
        return np.empty(0, dtype=np.int64)
    first, last = int(keys[0]), int(keys[-1])
    inside = (wanted >= keys[0]) & (wanted <= keys[-1])
    if last - first == len(keys) - 1 and keys.dtype.kind == "i":
        # Consecutive keys (ids, the common case): a key's index is its distance from the first.
        return np.where(inside, wanted.astype(np.int64) - first, -1)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(inside & (keys[at] == wanted), at, -1).astype(np.int64)


def distinct(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Element-wise `a IS DISTINCT FROM b`, with NaN equal to NaN."""
    differs = pc.not_equal(a, b)
    if pa.types.is_floating(a.type):
        differs = pc.and_not(differs, pc.and_(pc.is_nan(a), pc.is_nan(b)))
    if a.null_count == 0 and b.null_count == 0:
        return differs  # the common case: no NULL bookkeeping needed
    return pc.or_(pc.xor(a.is_null(), b.is_null()), pc.fill_null(differs, False))


def gather(rows: pa.Table, index: np.ndarray) -> pa.Table:
    """`rows.take(index)` without first concatenating the chunks of every column, as Arrow's take does: for a
    few rows of a large table that copy costs many times the gathering."""
    batches = rows.to_batches()
    if len(batches) <= 1 or not len(index):
        return rows.take(pa.array(index, pa.int64()))
    bounds = np.cumsum([0] + [b.num_rows for b in batches])
    order = np.argsort(index, kind="stable")
    ordered = np.asarray(index, dtype=np.int64)[order]
    which = np.searchsorted(bounds, ordered, side="right") - 1
    cuts = np.searchsorted(which, np.arange(len(batches) + 1))
    parts = [batches[b].take(pa.array(ordered[cuts[b]:cuts[b + 1]] - bounds[b]))
             for b in range(len(batches)) if cuts[b] < cuts[b + 1]]
    gathered = pa.Table.from_batches(parts, rows.schema).combine_chunks()
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return gathered.take(pa.array(back))


def any_of(flags: list[pa.ChunkedArray], rows: int) -> np.ndarray:
    """Element-wise OR of `flags` as numpy bools (all false when there are none)."""
    if not flags:
        return np.zeros(rows, dtype=bool)
    result = flags[0]
    for flag in flags[1:]:
        result = pc.or_(result, flag)
    return _bools(result)


def _bools(flags: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(flags.to_numpy(zero_copy_only=False), dtype=bool)
