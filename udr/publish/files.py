"""Files publishing writes: atomic whole-file writes, position-delete files, Parquet copies of inline rows.

Every file appears under its final name only complete and durable (temp file, fsync, rename, fsync of
the directory), so a crash leaves at worst an unreferenced temp file and readers never see a torn one.
Inline fragments (rows kept inside the log) get a Parquet chunk in the lake's chunk store, pinned for the
publishing destination so that `gc` keeps it while a published table names it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udr.errors import ConflictError
from udr.log.chunks import fsync_dir
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


def file_uri(path: Path) -> str:
    """The URI Iceberg metadata names a local file by: `file://` and the absolute path as is (readers such as
    pyiceberg do not percent-decode, so `Path.as_uri` would break paths with spaces)."""
    return "file://" + str(path.resolve())


def local_path(uri: str) -> Path:
    """The local path of a `file_uri`."""
    return Path(uri.removeprefix("file://"))


def write_atomic(path: Path, write: Callable[[Path], None], *, exclusive: bool = False) -> int:
    """Produce `path` whole through `write(temp)`; return its size.

    `exclusive`: fail if `path` exists (a hard link is atomic create-if-absent), so two publishers
    cannot both write one metadata version.

    Raises:
        ConflictError: `exclusive` and another publisher wrote `path` first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        size = tmp.stat().st_size
        with open(tmp, "rb+") as fh:
            # fsync before rename: a crash must not leave the final name pointing at empty blocks.
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise ConflictError(f"{path} was written by another publisher meanwhile; publish again") from exc
        else:
            os.replace(tmp, path)
        # The rename must survive a crash before anything that names the file is written.
        fsync_dir(path.parent)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> int:
    """`write_atomic` of given bytes."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write_atomic(path, write, exclusive=exclusive)


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
