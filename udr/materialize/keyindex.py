"""Finding the rows of a keyed table that hold given keys without scanning the table.

A keyed write (upsert, delete by key) of a few rows needs the positions of the current rows with those keys.
Scanning every key of a 1M-row table for that costs ~15 ms a transaction; instead each chunk's key column is
sorted once, and a lookup is a binary search per fragment, filtered by that fragment's deletion vector.

The index is derived state held in memory by one reader: chunks are immutable and named by their bytes, so a
chunk's sorted keys stay right for as long as the process lives, and deletion vectors (which change per table
state) are applied at each lookup. Losing it costs the next lookup one sort per chunk. Only single-column keys
of integer, temporal or string type are indexed; callers fall back to a scan for other keys.
Safe across threads: the cache is guarded by a lock, and its entries are immutable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from udr.materialize.schemas import parquet_field_id
from udr.materialize.snapshot import FragmentState, TableState

# Sorted key columns a reader keeps; a 1M-row int64 key costs 16 MB (keys and positions).
KEY_INDEX_BYTES = 256 << 20

# Reads one fragment's key column, every row (deleted ones included), conformed to the table's key field.
KeyColumn = Callable[[FragmentState, pa.Field], pa.ChunkedArray]
# Reads the positions a fragment's deletion vector deletes.
DeletedPositions = Callable[[FragmentState], pa.Array]


@dataclass(frozen=True, slots=True)
class SortedKeys:
    """One chunk's key column sorted: `keys[i]` is the key of the row at position `order[i]`."""

    keys: npt.NDArray[np.generic]
    order: npt.NDArray[np.uint32]

    @property
    def nbytes(self) -> int:
        """Bytes the arrays hold (strings: their pointers only)."""
        return int(self.keys.nbytes + self.order.nbytes)

    def positions(self, wanted: npt.NDArray[np.generic]) -> npt.NDArray[np.uint32]:
        """Positions of the rows whose key is in `wanted` (sorted, distinct), in increasing order."""
        low = np.searchsorted(self.keys, wanted, side="left")
        high = np.searchsorted(self.keys, wanted, side="right")
        counts = high - low
        if not counts.any():
            return np.empty(0, np.uint32)
        starts = np.repeat(low, counts)
        steps = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.sort(self.order[starts + steps])


def indexable(field: pa.Field) -> bool:
    """Whether a key column of this type can be indexed (and compared by numpy as the scan would)."""
    kind = field.type
    return bool(pa.types.is_integer(kind) or pa.types.is_temporal(kind) or pa.types.is_string(kind)
                or pa.types.is_large_string(kind))


def _as_numpy(values: pa.ChunkedArray | pa.Array, field: pa.Field) -> npt.NDArray[np.generic]:
    """Keys as a numpy array that orders and compares like the values: temporal types by their integer."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_temporal(field.type):
        width = pa.int32() if field.type.bit_width == 32 else pa.int64()
        values = values.view(width)
    return np.asarray(values.to_numpy(zero_copy_only=False))


def sort_keys(values: pa.ChunkedArray, field: pa.Field) -> SortedKeys:
    """Sort one chunk's key column (nulls, which never match a key, are left out)."""
    order = pc.sort_indices(values)  # nulls last
    present = len(values) - values.null_count
    order = order.slice(0, present)
    keys = _as_numpy(pc.take(values, order), field)
    return SortedKeys(keys, np.asarray(order.to_numpy(), dtype=np.uint32))


class KeyIndex:
    """Sorted key columns by chunk, newest kept within a byte budget; finds a table's rows by key."""

    def __init__(self, budget: int = KEY_INDEX_BYTES) -> None:
        self._budget = budget
        self._sorted: OrderedDict[tuple[str, str, str, int], SortedKeys] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def hits(self, state: TableState, field: pa.Field, keys: pa.ChunkedArray | pa.Array, *,
             column: KeyColumn, deleted: DeletedPositions) -> pa.Table:
        """(`__frag`, `__pos`) of the live rows of `state` whose key (column `field`) is one of `keys`.

        The same rows as a semi join of the table's live rows with `keys` (of `field`'s type).
        """
        wanted = np.unique(_as_numpy(keys.drop_null(), field))
        # A chunk read under another schema (a renamed or widened key) is another entry.
        signature = (str(field.type), parquet_field_id(field))
        frags: list[npt.NDArray[np.uint32]] = []
        positions: list[npt.NDArray[np.uint32]] = []
        for index, frag in enumerate(state.fragments):
            if frag.live_rows == 0 or len(wanted) == 0:
                continue
            found = self._sorted_keys((frag.chunk, frag.schema, *signature), frag, field, column).positions(wanted)
            if len(found) and frag.deletes is not None:
                found = found[~np.isin(found, np.asarray(deleted(frag)))]
            if len(found):
                frags.append(np.full(len(found), index, np.uint32))
                positions.append(found)
        empty = np.empty(0, np.uint32)
        return pa.table({"__frag": pa.array(np.concatenate(frags) if frags else empty, pa.uint32()),
                         "__pos": pa.array(np.concatenate(positions) if positions else empty, pa.uint32())})

    def _sorted_keys(self, name: tuple[str, str, str, int], frag: FragmentState, field: pa.Field,
                     column: KeyColumn) -> SortedKeys:
        with self._lock:
            found = self._sorted.get(name)
            if found is not None:
                self._sorted.move_to_end(name)
                return found
        made = sort_keys(column(frag, field), field)
        with self._lock:
            if name not in self._sorted and made.nbytes <= self._budget:
                self._sorted[name] = made
                self._bytes += made.nbytes
                while self._bytes > self._budget:
                    _, old = self._sorted.popitem(last=False)
                    self._bytes -= old.nbytes
        return made
