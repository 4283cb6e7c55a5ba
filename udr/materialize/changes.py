"""Row-level deltas between two states of one table, at fragment granularity.

Two states of a table share most fragments (chunks are immutable and deletion vectors cumulative), so the
rows that differ are exactly: the live rows of fragments present on one side only, and the rows of shared
fragments whose deletion vectors differ. This is what `changes`, `history`, `diff` and merges build on;
pairing removed and added rows into updates (by key) happens in the query layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from udr.materialize.data import RowReader, conform
from udr.materialize.snapshot import FragmentState, TableState


@dataclass(frozen=True, slots=True)
class RowDelta:
    """Rows present in the old state but not the new (`removed`) and the reverse (`added`)."""

    schema: pa.Schema
    removed: pa.Table
    added: pa.Table


def _deleted(rows: RowReader, frag: FragmentState) -> np.ndarray:
    return np.asarray(rows.deleted_positions(frag), dtype=np.uint32)


def state_delta(rows: RowReader, name: str, old: TableState | None, new: TableState | None) -> RowDelta:
    """The rows that differ between two states of table `name` (None: the table does not exist)."""
    ref = new if new is not None else old
    if ref is None:
        empty = pa.schema([])
        return RowDelta(empty, empty.empty_table(), empty.empty_table())
    schema = rows.schema(ref.schema)
    old_frags = {f.chunk: f for f in old.fragments} if old is not None else {}
    new_frags = {f.chunk: f for f in new.fragments} if new is not None else {}
    removed: list[pa.Table] = []
    added: list[pa.Table] = []
    for chunk, frag in old_frags.items():
        other = new_frags.get(chunk)
        if other is None:
            removed.append(rows.live(frag, table=name))
        elif other.deletes != frag.deletes:
            gone = np.setdiff1d(_deleted(rows, other), _deleted(rows, frag), assume_unique=True)
            back = np.setdiff1d(_deleted(rows, frag), _deleted(rows, other), assume_unique=True)
            if len(gone):
                removed.append(rows.rows_at(frag, gone, table=name))
            if len(back):
                added.append(rows.rows_at(frag, back, table=name))
    for chunk, frag in new_frags.items():
        if chunk not in old_frags:
            added.append(rows.live(frag, table=name))
    return RowDelta(schema, _concat(removed, schema), _concat(added, schema))


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    conformed = [conform(p, schema) for p in parts if p.num_rows]
    return pa.concat_tables(conformed) if conformed else schema.empty_table()
