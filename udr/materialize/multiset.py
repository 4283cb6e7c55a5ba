"""Tables without a primary key compared and merged as multisets of whole rows.

Two rows are the same row when every column is equal, with null equal to null and NaN equal to NaN. A row present
`k` times in one version and `m` times in another differs by `|k - m|` copies; nothing else counts as a change, so an
identical overwrite changes nothing. Which copies of a duplicated row are removed is deterministic: a delta first keeps
rows equal to the row at the same position of the other version, then among the rest keeps the copies at the lowest
positions; added copies are the later ones of the newer table.

Everything here is pure and vectorised: each column is dictionary-encoded (hash based, null and NaN each one value),
the per-column codes are folded into one dense code per row, and copies are counted with `numpy.bincount`. Only
rows whose counts differ are sorted. Dictionary encoding is slow at high cardinality (about 1 s per million distinct
values), which is why a delta pairs off rows unchanged in place first. Safe to call from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from udr.errors import Conflict, SchemaError

_Codes = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MultisetDelta:
    """The smallest change turning `old` into `new`: drop these rows of old, then append `added`."""

    removed_positions_in_old: pa.Array
    added: pa.Table


@dataclass(frozen=True, slots=True)
class MultisetMerge:
    """What to apply on top of ours to include theirs: drop these rows of ours, append `add`.

    When `conflicts` is not empty the other two fields must not be applied.
    """

    remove_positions_in_ours: pa.Array
    add: pa.Table
    conflicts: list[Conflict]


def multiset_delta(old: pa.Table, new: pa.Table) -> MultisetDelta:
    """Compare two versions of an unkeyed table as multisets of whole rows.

    Args:
        old: The earlier version.
        new: The later version, with the same column names and types as `old`.

    Returns:
        The positions in `old` to delete (ascending) and the rows of `new` to append.

    Raises:
        SchemaError: The two tables do not have the same columns.
    """
    _check_columns(old, [new])
    new = new.select(old.column_names)
    old_rest, new_rest = _unmatched_in_place(old, new)
    (old_codes, new_codes), distinct = _row_codes(old, [_take(old, old_rest), _take(new, new_rest)])
    old_count = np.bincount(old_codes, minlength=distinct)
    new_count = np.bincount(new_codes, minlength=distinct)
    removed = old_rest[_surplus(old_codes, new_count)]
    added = new_rest[_surplus(new_codes, old_count)]
    return MultisetDelta(pa.array(removed, pa.int64()), _take(new, added))


def _unmatched_in_place(old: pa.Table, new: pa.Table) -> tuple[_Codes, _Codes]:
    """Positions of old and of new whose row differs from the other table's row at the same position.

    An overwrite usually keeps most rows where they were; pairing those off first leaves the hashing below only the
    rows that moved or changed, which keeps an almost-identical overwrite cheap.
    """
    common = min(old.num_rows, new.num_rows)
    same = np.ones(common, dtype=bool)
    for name in old.column_names:
        a, b = old.column(name).slice(0, common), new.column(name).slice(0, common)
        equal = pc.fill_null(pc.equal(a, b), False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        equal = pc.or_(equal, both_null)
        if pa.types.is_floating(a.type):
            equal = pc.or_(equal, pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False))
        same &= np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)
    differ = np.flatnonzero(~same).astype(np.int64)
    return (np.r_[differ, np.arange(common, old.num_rows)], np.r_[differ, np.arange(common, new.num_rows)])


def merge_multiset(base: pa.Table, ours: pa.Table, theirs: pa.Table, *, table: str = "") -> MultisetMerge:
    """Three-way merge of an unkeyed table: every side's added copies kept, every side's removed copies removed.

    A row that the base holds `b` times, ours `o` times and theirs `t` times ends with `o + t - b` copies. When that is
    negative, both sides removed more copies than the base had: a conflict naming the table and the row.

    Args:
        base: The common ancestor's rows.
        ours: Our rows (the result is expressed as a change to these).
        theirs: Their rows.
        table: The table's name, used in conflicts.

    Returns:
        Positions of ours to delete, rows to append, and the conflicts (empty when the merge is clean).

    Raises:
        SchemaError: The three tables do not have the same columns.
    """
    (base_codes, our_codes, their_codes), distinct = _row_codes(base, [base, ours, theirs])
    b = np.bincount(base_codes, minlength=distinct)
    o = np.bincount(our_codes, minlength=distinct)
    t = np.bincount(their_codes, minlength=distinct)
    result = o + t - b
    negative = np.flatnonzero(result < 0)
    if negative.size:
        return MultisetMerge(pa.array([], pa.int64()), base.schema.empty_table(),
                             _conflicts(table, base, base_codes, negative, b, o, t))
    remove = _surplus(our_codes, result)
    add = _surplus(their_codes, b)
    return MultisetMerge(pa.array(remove, pa.int64()), _take(theirs, add), [])


def _row_codes(reference: pa.Table, tables: list[pa.Table]) -> tuple[list[_Codes], int]:
    """One dense int64 code per row of each table (equal rows, equal codes), and the number of distinct codes."""
    names = reference.column_names
    _check_columns(reference, tables)
    combined = pa.concat_tables([t.select(names) for t in tables], promote_options="permissive")
    codes = np.zeros(combined.num_rows, dtype=np.int64)
    distinct = 1
    for column in combined.columns:
        # One encode over the chunked column shares one dictionary across its chunks, so codes are comparable.
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        if not encoded.num_chunks:
            continue
        column_codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False)
                                       for c in encoded.chunks]).astype(np.int64)
        # Folding codes as a mixed-radix number stays below 2**63 while `distinct` is dense: n_rows**2 fits.
        codes = codes * max(len(c.dictionary) for c in encoded.chunks) + column_codes
        codes, distinct = _densify(codes)
    bounds = np.cumsum([0] + [t.num_rows for t in tables])
    return [codes[bounds[i] : bounds[i + 1]] for i in range(len(tables))], distinct


def _check_columns(reference: pa.Table, tables: list[pa.Table]) -> None:
    names = reference.column_names
    for other in tables:
        if sorted(other.column_names) != sorted(names):
            raise SchemaError(f"cannot compare rows with columns {other.column_names} to rows with columns {names}; "
                              "select the same columns on both sides")


def _densify(codes: _Codes) -> tuple[_Codes, int]:
    encoded = pc.dictionary_encode(pa.array(codes))
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _surplus(codes: _Codes, keep: npt.NDArray[np.int64]) -> _Codes:
    """Positions (ascending) of copies beyond the first `keep[code]` copies of each code, in position order."""
    candidates = np.flatnonzero(np.bincount(codes, minlength=len(keep))[codes] > keep[codes])
    if candidates.size == 0:
        return candidates.astype(np.int64)
    order = np.argsort(codes[candidates], kind="stable")
    grouped = codes[candidates][order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, grouped.size]))
    rank = np.arange(grouped.size) - run_start
    chosen = candidates[order][rank >= np.maximum(keep[grouped], 0)]
    return np.sort(chosen).astype(np.int64)


def _take(table: pa.Table, positions: _Codes) -> pa.Table:
    if positions.size == table.num_rows:
        return table
    return table.take(pa.array(positions, pa.int64()))


def _conflicts(
    table: str, base: pa.Table, base_codes: _Codes, codes: _Codes, b: _Codes, o: _Codes, t: _Codes
) -> list[Conflict]:
    """One conflict per over-removed row: `key` is the whole row, base/ours/theirs its copy counts."""
    order = np.argsort(base_codes, kind="stable")
    first = order[np.searchsorted(base_codes[order], codes)]
    rows = base.take(pa.array(first, pa.int64())).to_pylist()
    return [Conflict(table, row, None, int(b[c]), int(o[c]), int(t[c]))
            for row, c in zip(rows, codes.tolist(), strict=True)]
