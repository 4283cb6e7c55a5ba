"""The current rows of a table as a keyed write compares them (`CurrentRows`): stored rows, which of them
are live, and where each one is stored, worked out only for the rows a write deletes.

A value: `udr.materialize.current.read_current` reads one through a `RowSource`, the keyed diff
(`udr.query.diff`) compares it with new rows without reading anything itself. Pure values, safe from
any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True, slots=True)
class CurrentRows:
    """Rows of a table with the live ones marked and a way to find where each row is stored.

    Either whole fragments in order (`starts`: the index of each fragment's first row, then the row count)
    or rows read one by one (`located`: each row's fragment index and position).
    """

    rows: pa.Table
    live: np.ndarray | None = None  # one bool per row; None when every row is live
    starts: np.ndarray | None = None
    located: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_positioned(cls, table: pa.Table) -> CurrentRows:
        """Live rows carrying their place in `__frag` and `__pos` columns (as `RowReader.table` gives them)."""
        located = (table.column("__frag").to_numpy().astype(np.int64),
                   table.column("__pos").to_numpy().astype(np.int64))
        return cls(table.drop_columns(["__frag", "__pos"]), located=located)

    def live_index(self) -> np.ndarray:
        """Indices of the live rows."""
        if self.live is None:
            return np.arange(self.rows.num_rows, dtype=np.int64)
        return np.flatnonzero(self.live)

    def positions(self, index: np.ndarray) -> pa.Table:
        """(`__frag`, `__pos`) of the rows at `index`, as uint32 columns."""
        index = np.asarray(index, dtype=np.int64)
        if self.located is not None:
            frags, positions = self.located[0][index], self.located[1][index]
        elif self.starts is not None:
            frags = np.searchsorted(self.starts, index, side="right") - 1
            positions = index - self.starts[frags]
        else:
            frags, positions = np.zeros(len(index), dtype=np.int64), index
        return pa.table({"__frag": pa.array(frags.astype(np.uint32)), "__pos": pa.array(positions.astype(np.uint32))})

    def positioned(self) -> pa.Table:
        """The live rows with `__frag` and `__pos` columns (for comparisons that run in DuckDB)."""
        index = self.live_index()
        # One chunk per column: gathering from a many-chunk column is several times slower than the copy.
        rows = self.rows if self.live is None else self.rows.combine_chunks().take(pa.array(index))
        place = self.positions(index)
        return rows.append_column("__frag", place.column("__frag")).append_column("__pos", place.column("__pos"))
