"""Finding the rows of a keyed table that hold given keys without scanning the table.

A keyed write (upsert, delete by key) of a few rows needs the positions of the current rows with those keys.
Scanning every key of a 1M-row table for that costs ~15 ms a transaction; instead each large chunk's key
column is sorted once, and the table's trailing run of small fragments (the writes since its bulk load) is
kept sorted together in a few levels that grow with each new fragment (`_Run`): a lookup is a binary search
per large chunk plus one per level of the run, filtered by the fragments' deletion vectors. A table whose
index would not fit the budget is left to the scan.

The index is derived state held in memory by one reader: chunks are immutable and named by their bytes, so a
chunk's sorted keys stay right for as long as the process lives, and deletion vectors (which change per table
state) are applied at each lookup. A run's sorted keys are named by the exact fragments they cover; the next
state's run (the same fragments and a few new ones, written here or by other processes) adds the new
fragments' keys as a level of its own, so a keyed write never re-reads or re-sorts the fragments it indexed
before. Losing the index costs the next lookup one sort per chunk. Only single-column keys of integer,
temporal or string type are indexed; callers fall back to a scan for other keys.
Safe across threads: the cache is guarded by a lock, and its entries are immutable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import itemgetter

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from udr.materialize.schemas import parquet_field_id
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import in_sorted, sorted_distinct

# Sorted key columns a reader keeps; a 1M-row int64 key costs 16 MB (keys and positions).
KEY_INDEX_BYTES = 256 << 20
# Fragments of at most this many rows at the end of a table form its run of small writes, sorted together.
RUN_ROWS = 65_536
# How many fragments newer than the last run looked up a lookup extends it by (more: the run is sorted anew).
EXTEND = 64
# A run's level is merged into the one above it once that one is less than this many times larger (`_Run`).
LEVEL_RATIO = 4
# What a string key costs in memory beyond its pointer (a Python str object), for the budget.
_STRING_BYTES = 64
# What a cached entry costs beyond its arrays (its name, the arrays' headers), so that the many small fragments'
# decoded key columns a long-lived writer meets count against the budget too.
_ENTRY_BYTES = 512

# Reads one fragment's key column, every row (deleted ones included), conformed to the table's key field.
KeyColumn = Callable[[FragmentState, pa.Field], pa.ChunkedArray]
# Reads the positions a fragment's deletion vector deletes.
DeletedPositions = Callable[[FragmentState], pa.Array]


@dataclass(frozen=True, slots=True)
class SortedKeys:
    """One chunk's key column sorted: `keys[i]` is the key of the row at position `order[i]`."""

    keys: npt.NDArray[np.generic]
    order: npt.NDArray[np.uint64]

    @property
    def nbytes(self) -> int:
        """Bytes the index holds (string keys: an estimate of their objects too)."""
        return int(self.keys.nbytes + self.order.nbytes) + (_STRING_BYTES * len(self.keys)
                                                            if self.keys.dtype == object else 0)

    def positions(self, wanted: npt.NDArray[np.generic]) -> npt.NDArray[np.uint64]:
        """The `order` entries of the rows whose key is in `wanted` (sorted, distinct), in increasing order."""
        low = np.searchsorted(self.keys, wanted, side="left")
        high = np.searchsorted(self.keys, wanted, side="right")
        counts = high - low
        if not counts.any():
            return np.empty(0, np.uint64)
        starts = np.repeat(low, counts)
        steps = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.sort(self.order[starts + steps])

    def merged(self, other: SortedKeys) -> SortedKeys:
        """These keys and `other`'s sorted together (linear: `other` is inserted where it belongs)."""
        at = np.searchsorted(self.keys, other.keys, side="right")
        return SortedKeys(np.insert(self.keys, at, other.keys), np.insert(self.order, at, other.order))


@dataclass(frozen=True, slots=True)
class _Run:
    """The sorted keys of a run of small fragments, named by the (chunk, schema) of each, in order.

    Held as levels, each sorted on its own and at least `LEVEL_RATIO` times the size of the next: a new
    fragment's keys are a new level, merged with the levels above it only while they are not that much
    larger. A commit that adds ten keys to a run of ~20,000 then moves ~10 keys, not 20,000 (each key is
    merged a logarithmic number of times), and a lookup searches a logarithmic number of levels.
    Levels are shared between a run and the runs extended from it: never modified.
    """

    names: tuple[tuple[object, ...], ...]
    levels: tuple[SortedKeys, ...]

    @property
    def nbytes(self) -> int:
        return sum(level.nbytes for level in self.levels)

    def positions(self, wanted: npt.NDArray[np.generic]) -> npt.NDArray[np.uint64]:
        """The `order` entries (fragment << 32 | position) of the rows whose key is in `wanted`, increasing."""
        return np.sort(np.concatenate([level.positions(wanted) for level in self.levels]))

    def extended(self, names: tuple[tuple[object, ...], ...], keys: SortedKeys) -> _Run:
        """This run with the fragments `names` (which start with this run's) whose new keys are `keys`."""
        levels = list(self.levels)
        while levels and len(levels[-1].keys) < LEVEL_RATIO * len(keys.keys):
            keys = levels.pop().merged(keys)
        return _Run(names, (*levels, keys))


@dataclass(frozen=True, slots=True)
class _Column:
    """A large chunk's key column in position order (the keys of the rows a change deleted are looked up in it)."""

    keys: npt.NDArray[np.generic]

    @property
    def nbytes(self) -> int:
        return _ENTRY_BYTES + int(self.keys.nbytes) + (_STRING_BYTES * len(self.keys)
                                                       if self.keys.dtype == object else 0)


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
    if values.null_count == 0 and not pa.types.is_string(field.type) and not pa.types.is_large_string(field.type):
        keys = _as_numpy(values, field)
        if bool(np.all(np.greater_equal(keys[1:], keys[:-1]))):
            # A bulk load in key order (the common case): checking costs ~1 ms a million rows, sorting ~450 ms.
            return SortedKeys(keys, np.arange(len(keys), dtype=np.uint64))
    order = pc.sort_indices(values)  # nulls last
    present = len(values) - values.null_count
    order = order.slice(0, present)
    keys = _as_numpy(pc.take(values, order), field)
    return SortedKeys(keys, np.asarray(order.to_numpy(), dtype=np.uint64))


class KeyIndex:
    """Sorted key columns by chunk, newest kept within a byte budget; finds a table's rows by key."""

    def __init__(self, budget: int = KEY_INDEX_BYTES) -> None:
        self._budget = budget
        self._sorted: OrderedDict[tuple[object, ...], SortedKeys | _Run | _Column] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def hits(self, state: TableState, field: pa.Field, keys: pa.ChunkedArray | pa.Array, *,
             column: KeyColumn, deleted: DeletedPositions) -> pa.Table | None:
        """(`__frag`, `__pos`) of the live rows of `state` whose key (column `field`) is one of `keys`; None when
        the table's index would not fit the budget (every lookup would sort again: the caller scans instead).

        The same rows as a semi join of the table's live rows with `keys` (of `field`'s type).
        """
        per_row = 16 + (_STRING_BYTES if pa.types.is_string(field.type) or pa.types.is_large_string(field.type) else 0)
        if sum(map(itemgetter(1), state.fragments)) * per_row > self._budget:  # deleted rows are indexed too
            return None
        wanted = sorted_distinct(_as_numpy(keys.drop_null(), field))
        # A chunk read under another schema (a renamed or widened key) is another entry.
        signature = (str(field.type), parquet_field_id(field))
        found: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
        frags = state.fragments
        start = len(frags)
        while start and frags[start - 1].rows <= RUN_ROWS:
            start -= 1
        if not len(wanted):
            return _live_hits(frags, found, deleted)
        for index, frag in enumerate(frags[:start]):
            one = partial(_sort_one, frag, field, column)
            at = self._sorted_keys((frag.chunk, frag.schema, *signature), one).positions(wanted).astype(np.int64)
            found.append((np.full(len(at), index, np.int64), at))
        if start < len(frags):
            codes = self._run(frags[start:], signature, field, column).positions(wanted)
            found.append((start + (codes >> 32).astype(np.int64), (codes & 0xFFFFFFFF).astype(np.int64)))
        return _live_hits(frags, found, deleted)

    def keys_at(self, frag: FragmentState, field: pa.Field, positions: npt.NDArray[np.int64], *,
                column: KeyColumn) -> npt.NDArray[np.generic] | None:
        """The keys of the rows of `frag` at `positions` (deleted or not); None when a row's key is null (an erased
        row: the caller reads the rows instead)."""
        decoded = self._decoded(frag, field, column)
        at: npt.NDArray[np.generic] | None = None if decoded is None else decoded.keys[positions]
        return at

    def _decoded(self, frag: FragmentState, field: pa.Field, column: KeyColumn) -> _Column | None:
        """`frag`'s key column in position order (None: a key is null), kept decoded: a rebase asks for the keys
        of each fragment concurrent commits added, and the run's extension sorts them next. A large chunk's is
        unsorted from its sorted keys when those are held."""
        signature = (frag.chunk, frag.schema, str(field.type), parquet_field_id(field))
        with self._lock:
            found = self._sorted.get(("raw", *signature))
            ordered = self._sorted.get(signature)
            if isinstance(found, _Column):
                self._sorted.move_to_end(("raw", *signature))
                return found
        if isinstance(ordered, SortedKeys) and len(ordered.keys) == frag.rows:  # no null key: none left out
            keys = np.empty_like(ordered.keys)
            keys[ordered.order] = ordered.keys
        else:
            values = column(frag, field)
            if values.null_count:
                return None
            keys = _as_numpy(values, field)
        made = _Column(keys)
        self._keep(("raw", *signature), made)
        return made

    def _sort_run(self, run: tuple[FragmentState, ...], first: int, field: pa.Field,
                  column: KeyColumn) -> SortedKeys:
        """The keys of `run` sorted together; `order` holds (`first` + place in the run) << 32 | position."""
        decoded = [self._decoded(frag, field, column) for frag in run]
        if any(d is None for d in decoded):
            return _sort_run(run, first, field, column)  # null keys: Arrow's sort leaves them out
        keys = np.concatenate([d.keys for d in decoded if d is not None])
        codes = _run_codes([len(d.keys) for d in decoded if d is not None], first)
        order = np.argsort(keys, kind="stable")
        return SortedKeys(keys[order], codes[order])

    def _run(self, run: tuple[FragmentState, ...], signature: tuple[object, ...], field: pa.Field,
             column: KeyColumn) -> _Run:
        """The sorted keys of `run` (a table's trailing small fragments): cached, else a cached run of its first
        fragments extended by the others' keys, else sorted from every fragment's key column."""
        names = tuple(map(itemgetter(0, 3), run))  # (chunk, schema) of each

        def key(cut: int) -> tuple[object, ...]:  # the cache's name of the run of the first `cut` fragments
            return ("run", cut, names[cut - 1], *signature)

        with self._lock:
            for cut in range(len(names), max(0, len(names) - EXTEND), -1):
                entry = self._sorted.get(key(cut))
                if isinstance(entry, _Run) and entry.names == names[:cut]:
                    self._sorted.move_to_end(key(cut))
                    break
            else:
                entry = None
        if entry is not None and len(entry.names) == len(names):
            return entry
        superseded = None
        if entry is None:
            made = _Run(names, (self._sort_run(run, 0, field, column),))
        else:
            known = len(entry.names)
            made = entry.extended(names, self._sort_run(run[known:], known, field, column))
            # The extended run replaces the one it grew from: they share levels, so keeping both would count
            # those bytes twice (a run a commit: the budget filled with copies and evicted the large chunks').
            superseded = key(known)
        self._keep(key(len(names)), made, superseded=superseded)
        return made

    def _sorted_keys(self, name: tuple[object, ...], make: Callable[[], SortedKeys]) -> SortedKeys:
        with self._lock:
            found = self._sorted.get(name)
            if isinstance(found, SortedKeys):
                self._sorted.move_to_end(name)
                return found
        made = make()
        self._keep(name, made)
        return made

    def _keep(self, name: tuple[object, ...], made: SortedKeys | _Run | _Column, *,
              superseded: tuple[object, ...] | None = None) -> None:
        with self._lock:
            if superseded is not None and (old := self._sorted.pop(superseded, None)) is not None:
                self._bytes -= old.nbytes
            if name not in self._sorted and made.nbytes <= self._budget:
                self._sorted[name] = made
                self._bytes += made.nbytes
                while self._bytes > self._budget:
                    _, old = self._sorted.popitem(last=False)
                    self._bytes -= old.nbytes


def _sort_one(frag: FragmentState, field: pa.Field, column: KeyColumn) -> SortedKeys:
    return sort_keys(column(frag, field), field)


def _run_codes(lengths: list[int], first: int) -> npt.NDArray[np.uint64]:
    """(`first` + place in the run) << 32 | position, for every row of fragments of `lengths` rows, in order."""
    return np.concatenate([(np.uint64(n) << np.uint64(32)) + np.arange(rows, dtype=np.uint64)
                           for n, rows in enumerate(lengths, first)])


def _sort_run(run: tuple[FragmentState, ...], first: int, field: pa.Field, column: KeyColumn) -> SortedKeys:
    """The keys of `run` sorted together; `order` holds (`first` + place in the run) << 32 | position."""
    columns = [column(frag, field) for frag in run]
    codes = _run_codes([len(c) for c in columns], first)
    together = sort_keys(pa.chunked_array([chunk for c in columns for chunk in c.chunks], field.type), field)
    return SortedKeys(together.keys, codes[together.order])


def _live_hits(frags: tuple[FragmentState, ...], found: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
               deleted: DeletedPositions) -> pa.Table:
    """The hits (fragment index, position) that are live rows: deleted ones and those of deleted fragments dropped."""
    indexes = np.concatenate([f for f, _ in found]) if found else np.empty(0, np.int64)
    positions = np.concatenate([p for _, p in found]) if found else np.empty(0, np.int64)
    keep = np.ones(len(indexes), dtype=bool)
    for index in np.unique(indexes):
        frag = frags[int(index)]
        if frag.deletes is not None:
            mine = indexes == index
            keep[mine] &= ~in_sorted(positions[mine], np.asarray(deleted(frag)))
        elif frag.live_rows == 0:
            keep[indexes == index] = False
    return pa.table({"__frag": pa.array(indexes[keep].astype(np.uint32)),
                     "__pos": pa.array(positions[keep].astype(np.uint32))})
