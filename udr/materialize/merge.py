"""Three-way merge of one keyed table, row by row and cell by cell.

Input: the paired change tables base->ours and base->theirs (as built by the change feed: `_change` is
`insert`, `update_before`, `update_after` or `delete`). Output: what must be applied on top of *ours* to
include *theirs*: keys to remove from ours, rows to add, and the conflicts. Pure and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from udr.errors import Conflict
from udr.materialize.schemas import conform

CHANGE = "_change"
_ABSENT = object()
_BEFORE = pa.array(["delete", "update_before"])
_AFTER = pa.array(["insert", "update_after"])


@dataclass(frozen=True, slots=True)
class RowMerge:
    """The effect of merging theirs into ours for one table.

    `remove` holds the key columns of rows of ours to delete (deleted by theirs, or replaced by `add`);
    `add` holds full rows to insert.
    """

    remove: pa.Table
    add: pa.Table
    conflicts: list[Conflict]


def _sides(changes: pa.Table,
           key: Sequence[str]) -> dict[tuple[object, ...], tuple[dict[str, object] | None, dict[str, object] | None]]:
    """Key -> (row before, row after); None for "did not exist"."""
    out: dict[tuple[object, ...], tuple[dict[str, object] | None, dict[str, object] | None]] = {}
    columns = [c for c in changes.column_names if not c.startswith("_")]
    kinds = changes.column(CHANGE).to_pylist()
    rows = changes.select(columns).to_pylist()
    for kind, row in zip(kinds, rows):
        k = tuple(row[c] for c in key)
        before, after = out.get(k, (None, None))
        if kind in ("delete", "update_before"):
            before = row
        else:
            after = row
        out[k] = (before, after)
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def merge_rows(
    table: str, schema: pa.Schema, key: Sequence[str], ours: pa.Table, theirs: pa.Table, *, strategy: str | None
) -> RowMerge:
    """Merge `theirs` changes into `ours` for a keyed table.

    Two sides changing different rows, or different columns of one row, merge cleanly; the same cell
    changed to different values, or a row deleted on one side and changed on the other, is a conflict,
    unless `strategy` is "ours" or "theirs".
    """
    # Keys only theirs changed merge without looking at cells: take their after-rows, drop their
    # before-rows. Only keys both sides changed go through the cell-by-cell loop below.
    our_keys = set(_keys(ours, key))
    shared = pa.array([k in our_keys for k in _keys(theirs, key)], pa.bool_())
    clean = theirs.filter(pc.invert(shared))
    kinds = clean.column(CHANGE)
    key_schema = pa.schema([schema.field(c) for c in key])
    clean_remove = conform(clean.filter(pc.is_in(kinds, value_set=_BEFORE)).select(list(key)), key_schema)
    clean_add = conform(clean.filter(pc.is_in(kinds, value_set=_AFTER)), schema)
    contested = theirs.filter(shared)
    their_keys = set(_keys(contested, key))
    mine = _sides(ours.filter(pa.array([k in their_keys for k in _keys(ours, key)], pa.bool_())), key)
    other = _sides(contested, key)
    columns = list(schema.names)
    remove: list[dict[str, object]] = []
    add: list[dict[str, object]] = []
    conflicts: list[Conflict] = []
    for k, (base_row, their_row) in other.items():
        keydict = dict(zip(key, k))
        if k not in mine:
            if base_row is not None:
                remove.append(keydict)
            if their_row is not None:
                add.append(their_row)
            continue
        _, my_row = mine[k]
        if my_row is None and their_row is None:
            continue
        if my_row is None or their_row is None:
            if strategy == "theirs":
                if my_row is not None:
                    remove.append(keydict)
                if their_row is not None:
                    add.append(their_row)
            elif strategy != "ours":
                conflicts.append(Conflict(table, keydict, None, base_row, my_row, their_row))
            continue
        merged = _merge_cells(table, columns, keydict, base_row, my_row, their_row, strategy, conflicts)
        if merged is not None:
            remove.append(keydict)
            add.append(merged)
    return RowMerge(
        remove=pa.concat_tables([clean_remove, pa.Table.from_pylist(remove, schema=clean_remove.schema)]),
        add=pa.concat_tables([clean_add, pa.Table.from_pylist(add, schema=clean_add.schema)]),
        conflicts=conflicts,
    )


def _merge_cells(table: str, columns: list[str], keydict: dict[str, object], base_row: dict[str, object] | None,
                 my_row: dict[str, object], their_row: dict[str, object], strategy: str | None,
                 conflicts: list[Conflict]) -> dict[str, object] | None:
    """One key both sides changed, merged cell by cell: the new row (None: no change to ours, or a conflict,
    which is added to `conflicts`)."""
    merged = dict(my_row)
    clash = False
    for c in columns:
        # With no base row (both sides inserted the key) every differing cell is a conflict, NULLs too.
        b = base_row.get(c) if base_row is not None else _ABSENT
        o, t = my_row.get(c), their_row.get(c)
        if _same(o, t) or _same(t, b):
            continue
        if _same(o, b) or strategy == "theirs":
            merged[c] = t
        elif strategy != "ours":
            conflicts.append(Conflict(table, keydict, c, None if b is _ABSENT else b, o, t))
            clash = True
    if clash or all(_same(merged[c], my_row.get(c)) for c in columns):
        return None
    return merged


def _keys(changes: pa.Table, key: Sequence[str]) -> list[tuple[object, ...]]:
    return list(zip(*(changes.column(k).to_pylist() for k in key))) if changes.num_rows else []
