"""Reading the current rows of a table as a keyed write compares them (`udr.materialize.currentrows`): stored
rows, which of them are live, and where each one is stored, worked out only for the rows a write deletes.

A keyed overwrite compares every current row with the new data and deletes the few that changed. Reading
the table's live rows with a fragment index and a row position on each (`RowReader.table(with_position=True)`)
costs two copies of the whole table and two new columns per refresh; here every stored row is read as it is,
deleted ones included, and only the rows a write deletes get their (fragment, position). Pure values,
safe from any thread.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from udr.materialize.currentrows import CurrentRows
from udr.materialize.protocols import RowSource
from udr.materialize.states import TableState


def read_current(reader: RowSource, name: str, state: TableState, columns: list[str] | None = None) -> CurrentRows:
    """Every stored row of `name`'s fragments in order (deleted ones included, marked in `live`), conformed
    to the table's schema (only `columns` if given)."""
    schema = reader.schema(state.schema)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    parts = [reader.live_as(frag._replace(deletes=None, deleted=0), schema, table=name) for frag in state.fragments]
    if not parts:
        return CurrentRows(schema.empty_table(), starts=np.zeros(1, dtype=np.int64))
    starts = np.concatenate([[0], np.cumsum([f.rows for f in state.fragments])]).astype(np.int64)
    live = None
    if any(f.deletes is not None for f in state.fragments):
        live = np.concatenate([reader.keep_mask(f) for f in state.fragments])
    # Chunks as stored: a comparison that gathers rows combines them first (`CurrentRows.positioned`,
    # `udr.query.diff`); one that lines rows up (`udr.query.aligned`) never copies them.
    return CurrentRows(pa.concat_tables(parts), live, starts)

