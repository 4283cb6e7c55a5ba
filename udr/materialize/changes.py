"""Row-level deltas between two states of one table, at fragment granularity.

Two states of a table share most fragments (chunks are immutable and deletion vectors cumulative), so the
rows that differ are exactly: the live rows of fragments present on one side only, and the rows of shared
fragments whose deletion vectors differ. This is what `changes`, `history`, `diff` and merges build on;
pairing removed and added rows into updates (by key) happens in the query layer.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udr.log.format import ChunkId
from udr.materialize.protocols import RowSource
from udr.materialize.schemas import conform
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import added_between, in_sorted

CHANGE = "_change"


@dataclass(frozen=True, slots=True)
class RowDelta:
    """Rows present in the old state but not the new (`removed`) and the reverse (`added`)."""

    schema: pa.Schema
    removed: pa.Table
    added: pa.Table


def _deleted(rows: RowSource, frag: FragmentState) -> np.ndarray:
    return np.asarray(rows.deleted_positions(frag), dtype=np.uint32)


def state_delta(rows: RowSource, name: str, old: TableState | None, new: TableState | None, *,
                added: AbstractSet[ChunkId] | None = None, redeleted: Collection[ChunkId] = (),
                columns: list[str] | None = None) -> RowDelta:
    """The rows that differ between two states of table `name` (None: the table does not exist), only
    their `columns` if given (only those are decoded).

    When `new` is `old` after one commit that neither created nor truncated the table, the caller may
    name the commit's `added` chunks and the chunks whose deletion vectors it `redeleted`: only those
    fragments can differ, the others are taken as unchanged without comparing them, and a commit that
    only appends costs the same however many fragments the table has.
    """
    ref = new if new is not None else old
    if ref is None:
        empty = pa.schema([])
        return RowDelta(empty, empty.empty_table(), empty.empty_table())
    schema = rows.schema(ref.schema)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if added is None:
        old_frags = {f.chunk: f for f in old.fragments} if old is not None else {}
        new_frags = {f.chunk: f for f in new.fragments} if new is not None else {}
    else:
        old_frags = _picked(old, redeleted)
        new_frags = _picked(new, redeleted)
        new_frags.update((f.chunk, f) for f in (new.appended(added) if new is not None else ()))
    removed: list[pa.Table] = []
    added_rows: list[pa.Table] = []
    for chunk, frag in old_frags.items():
        other = new_frags.get(chunk)
        if other is None:
            removed.append(rows.live_as(frag, schema, table=name))
        elif other.deletes != frag.deletes:
            gone, back = deleted_between(rows, frag, other)
            if len(gone):
                removed.append(_rows_at(rows, frag, gone, schema, name, whole_columns=columns is not None))
            if len(back):
                added_rows.append(_rows_at(rows, frag, back, schema, name, whole_columns=columns is not None))
    for chunk, frag in new_frags.items():
        if chunk not in old_frags:
            added_rows.append(rows.live_as(frag, schema, table=name))
    return RowDelta(schema, _concat(removed, schema), _concat(added_rows, schema))


def deleted_between(rows: RowSource, old: FragmentState, new: FragmentState) -> tuple[np.ndarray, np.ndarray]:
    """The positions of a fragment deleted in state `new` but not `old`, and the reverse (sorted uint32)."""
    if old.deletes is not None and new.deletes is not None:
        # A later vector chaining onto the earlier one: only the links between them are read, not the
        # cumulative sets (a first load's vector names every row replaced since, and grows each night).
        gone = added_between(new.deletes, old.deletes, rows.vector_payload)
        if gone is not None:
            return gone, np.empty(0, np.uint32)
    now, before = _deleted(rows, new), _deleted(rows, old)
    return now[~in_sorted(now, before)], before[~in_sorted(before, now)]


def _rows_at(rows: RowSource, frag: FragmentState, positions: np.ndarray, schema: pa.Schema, name: str, *,
             whole_columns: bool) -> pa.Table:
    """The rows of `frag` at sorted `positions` under `schema`. With `whole_columns` (a few of the table's
    columns, such as its key) each column is decoded whole: cheaper than every column of each row group
    holding one of the rows, which is how they are read otherwise."""
    if whole_columns:
        return rows.live_as(frag._replace(deletes=None, deleted=0), schema, table=name).take(pa.array(positions))
    return rows.rows_at_as(frag, positions, schema, table=name)


def _picked(state: TableState | None, chunks: Collection[ChunkId]) -> dict[ChunkId, FragmentState]:
    if state is None or not chunks:
        return {}
    return {f.chunk: f for f in state.fragments if f.chunk in chunks}


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    conformed = [conform(p, schema) for p in parts if p.num_rows]
    if len(conformed) == 1:
        return conformed[0]
    return pa.concat_tables(conformed) if conformed else _empty(schema)


@lru_cache(maxsize=64)
def _empty(schema: pa.Schema) -> pa.Table:
    # Most commits only add rows: every change-feed batch would otherwise build an empty "removed" table.
    return schema.empty_table()


def changes_from_before(rows: RowSource, name: str, new: TableState, added: set[ChunkId], before: pa.Table,
                        key: list[str]) -> pa.Table:
    """The change rows of a keyed write, from its before-image and the rows it added (no old chunk read).

    Order matches the general path: deletes, then `update_before`/`update_after` pairs by key, then inserts.
    """
    schema = rows.schema(new.schema)
    after = _concat([rows.live_as(f, schema, table=name) for f in new.appended(added)], schema)
    deleted = pc.fill_null(before.column("__deleted"), False)
    gone = before.filter(deleted)
    updates = before.filter(pc.invert(deleted))
    values = [c for c in before.column_names if c not in key and not c.startswith("__")]
    tagged = after.append_column("__row", pa.array(np.arange(after.num_rows, dtype=np.int64)))
    image = updates.append_column("__img", pa.array(np.arange(updates.num_rows, dtype=np.int64)))
    # Parquet stores some types wider (timestamp[s] as [ms], date64 as date32): join on the table's types.
    image_keys = pa.table([*(image.column(k).cast(schema.field(k).type) for k in key), image.column("__img")],
                          names=[*key, "__img"])
    pairs = tagged.select([*key, "__row"]).join(image_keys, keys=key, join_type="inner")
    pairs = pairs.sort_by([(k, "ascending") for k in key])
    new_rows = after.take(pairs.column("__row"))
    old_cells = updates.take(pairs.column("__img"))
    mask = old_cells.column("__mask")
    old_rows = new_rows
    for bit, column in enumerate(values):
        if column not in schema.names:
            continue
        hit = pc.not_equal(pc.bit_wise_and(mask, pa.scalar(1 << bit, pa.uint64())), pa.scalar(0, pa.uint64()))
        index = schema.get_field_index(column)
        merged = pc.if_else(hit, old_cells.column(column).cast(schema.field(column).type), new_rows.column(column))
        old_rows = old_rows.set_column(index, schema.field(column), merged)
    is_update = np.zeros(after.num_rows, dtype=bool)
    is_update[np.asarray(pairs.column("__row"), dtype=np.int64)] = True
    inserts = after.filter(pa.array(~is_update))
    n = pairs.num_rows
    order = np.empty(2 * n, dtype=np.int64)
    order[0::2] = np.arange(n)
    order[1::2] = np.arange(n, 2 * n)
    pairs_table = pa.concat_tables([old_rows, new_rows]).take(pa.array(order))
    kinds = pa.array(np.tile(np.array(["update_before", "update_after"], dtype=object), n), pa.string())
    deleted_rows = _concat([gone.select([c for c in gone.column_names if not c.startswith("__")])], schema)
    return pa.concat_tables([
        _labelled(deleted_rows, "delete"),
        pairs_table.append_column(CHANGE, kinds),
        _labelled(inserts.sort_by([(k, "ascending") for k in key]), "insert"),
    ])


def _labelled(data: pa.Table, change: str) -> pa.Table:
    return data.append_column(CHANGE, pa.repeat(pa.scalar(change, pa.string()), data.num_rows))
