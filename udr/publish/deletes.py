"""Deletion vectors as Iceberg position-delete files: which files a snapshot keeps, which it writes.

Each snapshot writes at most one position-delete file, holding the whole (cumulative) deletion vector of
every fragment whose vector changed in that commit. A fragment's *current* delete file is the newest live
one that covers it. An older live file may still list positions of a fragment whose vector moved on; that
is harmless while vectors only grow (the old positions are deleted still). When a vector shrinks (a reset
or merge brought back rows), every live file covering that fragment is dropped and the fragments those
files were current for are written again into the new file, so a reader applying every live delete file
deletes exactly the rows UDR deletes. A delete file no live fragment calls current is dropped. Pure
planning, and the bytes of a position-delete file (`encode_position_deletes`): the caller writes the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udr.materialize.states import FragmentState
from udr.publish.avro import FileEntry

Positions = Callable[[FragmentState], np.ndarray]

# Iceberg's reserved field ids of a position-delete file's columns.
_DELETE_SCHEMA = pa.schema([
    pa.field("file_path", pa.string(), nullable=False, metadata={"PARQUET:field_id": "2147483546"}),
    pa.field("pos", pa.int64(), nullable=False, metadata={"PARQUET:field_id": "2147483545"}),
])


def encode_position_deletes(rows: Sequence[tuple[str, np.ndarray]]) -> bytes:
    """A position-delete Parquet file: for each (data file URI, sorted positions), its rows.

    Rows are ordered by file path, then position, as the Iceberg spec requires.
    """
    ordered = sorted(rows, key=lambda r: r[0])
    names = np.array([name for name, _ in ordered], dtype=object)
    table = pa.table([
        pa.array(np.repeat(names, [len(p) for _, p in ordered]), pa.string()),
        pa.array(np.concatenate([p.astype(np.int64) for _, p in ordered]), pa.int64()),
    ], schema=_DELETE_SCHEMA)
    out = pa.BufferOutputStream()
    pq.write_table(table, out, compression="zstd")
    return bytes(out.getvalue().to_pybytes())


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """What one snapshot does to position-delete files."""

    keep: frozenset[str]
    write: tuple[tuple[str, np.ndarray], ...]  # (data file path, sorted positions), for the new file


def _current(path: str, data_seq: int, files: Sequence[FileEntry]) -> FileEntry | None:
    best = None
    for f in files:
        if path in f.covers and f.sequence >= data_seq and (best is None or f.sequence > best.sequence):
            best = f
    return best


def plan_deletes(before: Mapping[str, FragmentState], after: Mapping[str, FragmentState],
                 data_seq: Mapping[str, int], live: Sequence[FileEntry], positions: Positions) -> DeletePlan:
    """Plan the delete files of a snapshot.

    Args:
        before: data file path -> fragment, at the parent snapshot (only data files the snapshot keeps).
        after: data file path -> fragment, at this snapshot.
        data_seq: data file path -> its data sequence number at this snapshot.
        live: the parent snapshot's live delete files.
        positions: decodes a fragment's deletion vector (sorted positions).
    """
    changed: dict[str, np.ndarray] = {}
    dirty: set[str] = set()
    for path, frag in after.items():
        old = before.get(path)
        old_vector = old.deletes if old is not None else None
        if frag.deletes == old_vector:
            continue
        new = positions(frag) if frag.deletes is not None else np.empty(0, np.int64)
        changed[path] = new
        if old is not None and old.deletes is not None and np.setdiff1d(positions(old), new).size:
            dirty.update(f.path for f in live if path in f.covers)
    clean = [f for f in live if f.path not in dirty]
    keep: set[str] = set()
    write = {p: v for p, v in changed.items() if v.size}
    for path, frag in after.items():
        if frag.deletes is None or path in changed:
            continue
        current = _current(path, data_seq[path], clean)
        if current is None:
            # Its current file was dirty: write its vector again.
            write[path] = positions(frag)
        else:
            keep.add(current.path)
    return DeletePlan(frozenset(keep), tuple(sorted(write.items())))
