"""Data files publishing writes: Parquet copies of inline rows.

Inline fragments (rows kept inside the log) get a Parquet chunk in the lake's chunk store, pinned for the
publishing destination so that `gc` keeps it while a published table names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from udr.log.format import ROW_GROUP_ROWS, ChunkId
from udr.log.pins import PinStore
from udr.log.protocols import LakeLog
from udr.materialize.data import RowReader, rebatch, write_parquet
from udr.materialize.states import FragmentState


def inline_owner(dest: str) -> str:
    """The pin owner of a publishing destination (its recorded name: an absolute path or a URL)."""
    return f"iceberg:{dest}"


def materialize_inline(log: LakeLog, rows: RowReader, dest: str, frags: Sequence[FragmentState],
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
