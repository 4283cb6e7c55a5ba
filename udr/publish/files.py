"""Data files publishing writes: position-delete files, Parquet copies of inline rows.

Inline fragments (rows kept inside the log) get a Parquet chunk in the lake's chunk store, pinned for the
publishing destination so that `gc` keeps it while a published table names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udr.log.format import ROW_GROUP_ROWS, ChunkId
from udr.log.pins import PinStore
from udr.log.store import LogStore
from udr.materialize.data import RowReader, rebatch, write_parquet
from udr.materialize.states import FragmentState

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


def inline_owner(dest: str) -> str:
    """The pin owner of a publishing destination (its recorded name: an absolute path or a URL)."""
    return f"iceberg:{dest}"


def materialize_inline(log: LogStore, rows: RowReader, dest: str, frags: Sequence[FragmentState],
                       table: str) -> dict[ChunkId, ChunkId]:
    """Give each inline fragment a Parquet chunk in the chunk store (once: pins remember it); return
    inline chunk -> Parquet chunk for `frags`."""
    pins = PinStore(log)
    owner = inline_owner(dest)
    known = {ChunkId(k): v for k, v in pins.pins(owner).items()}
    new: dict[str, ChunkId] = {}
    for frag in frags:
        if frag.chunk in known or frag.chunk in new:
            continue
        data = rows.fragment(frag, table=table)
        # Keep the copy salt: a table's identical inline fragments must stay distinct files.
        copy = int((data.schema.metadata or {}).get(b"udr.copy", b"0"))

        def write(path: Path, data: pa.Table = data, copy: int = copy) -> None:
            write_parquet(rebatch(iter(data.to_batches()), ROW_GROUP_ROWS), data.schema, path, copy=copy)

        # The intent keeps a concurrent gc off the file until the pin below replaces it.
        new[frag.chunk] = log.chunks.put_written(write, announce=lambda c: log.register_intents([c]))
    if new:
        pins.pin(owner, new)
    return {f.chunk: known.get(f.chunk) or new[f.chunk] for f in frags}
