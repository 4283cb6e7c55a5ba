"""The keys a change of a keyed table touched, read through the key index instead of as rows.

The automatic rebase asks, for a keyed table both a transaction and the commits since its base changed,
whether any key was changed on both sides; only then must rows be paired and merged cell by cell. Reading
the differing rows whole for that question (`udr.materialize.changes.state_delta`) cost four concurrent
upserting writers most of their rebase: here only the keys are read, those of deleted rows from the key
index's decoded key column of their chunk (`udr.materialize.keyindex.KeyIndex.keys_at`).

Pure reads through a `RowReader` and the lake's `KeyIndex`; as safe across threads as the reader is.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from udr.materialize.changes import deleted_between
from udr.materialize.data import RowReader
from udr.materialize.keyindex import KeyIndex
from udr.materialize.schemas import key_field
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import sorted_distinct


def touched_keys(rows: RowReader, keys: KeyIndex, old: TableState,
                 new: TableState) -> npt.NDArray[np.generic] | None:
    """The sorted distinct keys of the rows that differ between two states of a keyed table (removed or added,
    as `state_delta` finds them), read through the lake's key index `keys`; None when the key is not one
    column the key index holds, or a differing row's key is null (an erased row): the caller compares the
    rows instead."""
    before = {f.chunk: f for f in old.fragments}
    after = {f.chunk: f for f in new.fragments}
    parts: list[npt.NDArray[np.generic] | None] = []
    for chunk, frag in before.items():
        other = after.get(chunk)
        if other is None:
            parts.append(_live_keys(rows, keys, new, frag))
        elif other.deletes != frag.deletes:
            gone = np.concatenate(deleted_between(rows, frag, other)).astype(np.int64)
            parts.append(_keys_at(rows, keys, new, frag, gone))
    parts.extend(_live_keys(rows, keys, new, frag) for chunk, frag in after.items() if chunk not in before)
    found = [p for p in parts if p is not None]
    if len(found) < len(parts):
        return None
    return sorted_distinct(np.concatenate(found)) if found else np.empty(0, np.int64)


def shared_keys(rows: RowReader, keys: KeyIndex, base: TableState, ours: TableState,
                theirs: TableState) -> bool | None:
    """Whether a key changed from `base` to `ours` also changed from `base` to `theirs` (None: `touched_keys`
    cannot tell)."""
    mine = touched_keys(rows, keys, base, ours)
    other = touched_keys(rows, keys, base, theirs) if mine is not None and len(mine) else mine
    if mine is None or other is None:
        return None
    return bool(np.intersect1d(mine, other, assume_unique=True).size)


def _keys_at(rows: RowReader, keys: KeyIndex, state: TableState, frag: FragmentState,
             positions: npt.NDArray[np.int64]) -> npt.NDArray[np.generic] | None:
    field = key_field(rows.schema(state.schema), state.primary_key)
    return None if field is None else keys.keys_at(frag, field, positions, column=rows.key_column)


def _live_keys(rows: RowReader, keys: KeyIndex, state: TableState,
               frag: FragmentState) -> npt.NDArray[np.generic] | None:
    return _keys_at(rows, keys, state, frag, np.flatnonzero(rows.keep_mask(frag)))
