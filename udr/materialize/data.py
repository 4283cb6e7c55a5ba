"""Table rows in and out of the chunk store: encoding batches as chunks, reading fragments back.

Encoding is deterministic: the same rows with the same schema give the same bytes, hence the same
chunk id, which is what makes storage deduplicate. Big batches become Parquet files (which DuckDB scans
with pushdown); small ones become Arrow IPC blobs inlined in the log, written at the commit point.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Generic, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udr.errors import CorruptionError
from udr.log.chunks import FileChunkStore
from udr.log.commits import Fragment
from udr.log.format import (
    CHUNK_ROWS,
    INLINE_MAX_BYTES,
    INLINE_PARQUET_BYTES,
    PARQUET_COMPRESSION,
    ROW_GROUP_ROWS,
    SHORT_CHUNK_COMPRESSION,
    SHORT_CHUNK_LEVEL,
    BlobId,
    BlobKind,
    ChunkId,
)
from udr.log.hashing import content_id
from udr.materialize.encodings import column_encodings
from udr.materialize.parquetread import read_chunk
from udr.materialize.schemas import as_target, conform, parquet_field_id, stored_names
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import read_vector

BlobGetter = Callable[[BlobId, BlobKind], bytes]
_PARQUET_MAGIC = b"PAR1"
_IPC_OPTIONS = pa.ipc.IpcWriteOptions()
# Decoded inline chunks and deletion vectors a reader keeps (see `_DecodedCache`).
INLINE_CACHE_BYTES = 64 << 20
# `RowReader.rows_at` reads at most this many rows as one-row slices.
_SLICED_ROWS = 16
# Vectors: a pass over a nightly refresh's 77 tables after ten nights reads ~30 MB (less: the LRU always misses).
POSITIONS_CACHE_BYTES = 64 << 20
# Decoded Parquet row groups that keyed writes read rows from by position.
ROW_GROUP_CACHE_BYTES = 64 << 20
_PARQUET_FIELD_ID = b"PARQUET:field_id"


def encode_schema(schema: pa.Schema) -> tuple[BlobId, bytes]:
    """Return (id, payload) of a schema blob (schema-level metadata dropped, so ids depend on columns only)."""
    payload = schema.remove_metadata().serialize().to_pybytes()
    return BlobId(content_id(payload)), payload


def decode_schema(payload: bytes) -> pa.Schema:
    """Parse a schema blob payload."""
    return pa.ipc.read_schema(pa.py_buffer(payload))


def encode_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes of `table` (uncompressed: the log's blob framing compresses)."""
    sink = pa.BufferOutputStream()
    # Explicit options: `pa.ipc.new_stream` consults environment variables on every call.
    with pa.ipc.RecordBatchStreamWriter(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return cast(bytes, sink.getvalue().to_pybytes())  # pyarrow is untyped: its calls return Any


def decode_ipc(payload: bytes) -> pa.Table:
    """Parse Arrow IPC stream bytes."""
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def _salted(schema: pa.Schema, copy: int) -> pa.Schema:
    # Every column carries the Parquet field id derived from its stable id: Iceberg readers of a published
    # table (and engines such as Daft that ignore name mappings) match a file's columns by it, across renames.
    # A source file's own ids are replaced: they would make those readers swap columns.
    fields = [f.with_metadata({**(f.metadata or {}), _PARQUET_FIELD_ID: str(parquet_field_id(f)).encode()})
              for f in schema]
    return pa.schema(fields, metadata=_copy_metadata(copy))


def _copy_metadata(copy: int) -> dict[str, str] | None:
    """A chunk's schema metadata: only its copy number, when it has one (`encode_chunk`)."""
    return {"udr.copy": str(copy)} if copy else None


def chunk_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema a Parquet chunk of a table of `schema` stores (each column with its Parquet field id),
    for a writer other than `write_parquet` to store the same."""
    return _salted(schema, 0)


def write_parquet(pieces: Iterable[pa.Table], schema: pa.Schema, path: Path | pa.NativeFile, *, copy: int = 0) -> int:
    """Write row-group-sized `pieces` as one Parquet chunk at `path` (or into a stream); return the rows written.

    Pieces are consumed one at a time, so a streamed chunk never sits whole in memory, and a chunk has
    the same bytes whether its rows arrived as one table or as a stream.
    """
    target = _salted(schema, copy)
    pieces = iter(pieces)
    first = next(pieces, None)
    # Pieces are whole row groups but the last, so the first tells a short chunk, streamed or not.
    short = first is None or first.num_rows < ROW_GROUP_ROWS
    dictionary, encodings = column_encodings(target, first, short=short)
    rows = 0
    with pq.ParquetWriter(path, target, compression=SHORT_CHUNK_COMPRESSION if short else PARQUET_COMPRESSION,
                          compression_level=SHORT_CHUNK_LEVEL if short else None, use_dictionary=dictionary,
                          column_encoding=encodings or None, write_statistics=True,
                          store_decimal_as_integer=True) as writer:
        for piece in chain([first] if first is not None else [], pieces):
            writer.write_table(piece.replace_schema_metadata(target.metadata), row_group_size=ROW_GROUP_ROWS)
            rows += piece.num_rows
    return rows


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """One chunk ready to be committed: a fragment plus, for inline ones, the blob payload."""

    fragment: Fragment
    payload: bytes | None
    # For inline chunks, the rows exactly as the payload decodes (kept by readers of this process).
    rows: pa.Table | None = None


def rebatch(batches: Iterator[pa.RecordBatch], rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Regroup a stream of batches into tables of exactly `rows` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        rest = batch
        while rest.num_rows:
            take = min(rows - count, rest.num_rows)
            whole = take == rest.num_rows
            # A batch that fits whole is taken as it is (slicing it cost a small write ~4 us).
            pending.append(rest if whole else rest.slice(0, take))
            count += take
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
            if whole:
                break
            rest = rest.slice(take)
    if count:
        yield pa.Table.from_batches(pending)


StoreFile = Callable[[Callable[[Path], None]], ChunkId]
"""Stores the file a writer callback produces at the temp path it is given; returns the chunk id."""


def encode_inline(table: pa.Table, schema_id: BlobId, *, copy: int = 0, parquet: bool = False) -> EncodedChunk:
    """Encode a small chunk as a blob to inline in the log: Arrow IPC, or with `parquet` (a lake of format 4
    or later) a Parquet file laid out as a chunk file when its IPC bytes exceed `INLINE_PARQUET_BYTES`."""
    # One record batch whatever the input's batching, so the same rows always give the same bytes.
    # Schema-level metadata only: Arrow IPC keeps field metadata as given, so no Parquet field ids are added.
    rows = table.replace_schema_metadata(_copy_metadata(copy)).combine_chunks()
    payload = encode_ipc(rows)
    if parquet and len(payload) > INLINE_PARQUET_BYTES:
        # The bulk's encodings (sorted keys delta-packed, dictionaries) store a keyed write's changed rows
        # in ~0.7x the bytes of IPC under the log's zstd.
        sink = pa.BufferOutputStream()
        write_parquet([table.combine_chunks()], table.schema, sink, copy=copy)
        payload = cast(bytes, sink.getvalue().to_pybytes())  # pyarrow is untyped: its calls return Any
        rows = decode_inline(payload)
    return EncodedChunk(Fragment(ChunkId(content_id(payload)), table.num_rows, True, schema_id), payload, rows)


def decode_inline(payload: bytes) -> pa.Table:
    """The rows of an inline chunk's blob payload: a Parquet file (it starts with its magic) or Arrow IPC."""
    if payload[:4] == _PARQUET_MAGIC:
        # `pq.read_table` (datasets) costs twice this on a small file.
        return pq.ParquetFile(pa.BufferReader(payload)).read(use_threads=False)
    return decode_ipc(payload)


def store_parquet(pieces: Iterable[pa.Table], schema: pa.Schema, schema_id: BlobId, store_file: StoreFile, *,
                  copy: int = 0) -> EncodedChunk:
    """Write `pieces` as one Parquet chunk file through `store_file`."""
    rows = 0

    def write(path: Path) -> None:
        nonlocal rows
        rows = write_parquet(pieces, schema, path, copy=copy)

    chunk = store_file(write)
    return EncodedChunk(Fragment(chunk, rows, False, schema_id), None)


def encode_chunk(table: pa.Table, schema_id: BlobId, store_file: StoreFile, *, copy: int = 0,
                 parquet: bool = False) -> EncodedChunk:
    """Encode at most one chunk's rows: inline if small, else a Parquet file via `store_file`.

    A table never holds one chunk twice (deletion vectors are keyed by chunk id), so rows identical to a
    chunk already in the table are re-encoded with `copy` > 0, which only changes schema metadata.
    `parquet` as in `encode_inline`.
    """
    if table.nbytes <= INLINE_MAX_BYTES:
        return encode_inline(table, schema_id, copy=copy, parquet=parquet)
    return store_parquet(rebatch(iter(table.to_batches()), ROW_GROUP_ROWS), table.schema, schema_id, store_file,
                         copy=copy)


_Decoded = TypeVar("_Decoded", pa.Table, pa.Array)


class _DecodedCache(Generic[_Decoded]):
    """Decoded blobs (inline chunks, deletion vectors, row groups of chunks) by id, newest kept, within a byte
    budget; shared by threads.

    Blobs are immutable and named by their bytes, so a decoded one stays right. Many small writes make many
    inline chunks and deletion vectors: every read of the table would otherwise decode each one again.
    """

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._values: OrderedDict[str, _Decoded] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> _Decoded | None:
        with self._lock:
            return self._values.get(key)

    def put(self, key: str, value: _Decoded) -> None:
        size = value.get_total_buffer_size()
        if size > self._budget:
            return
        with self._lock:
            if key in self._values:
                return
            self._values[key] = value
            self._bytes += size
            while self._bytes > self._budget:
                _, old = self._values.popitem(last=False)
                self._bytes -= old.get_total_buffer_size()


class RowReader:
    """Reads table fragments back as Arrow, verifying what it reads."""

    def __init__(self, chunks: FileChunkStore, blobs: BlobGetter, *, caches_of: RowReader | None = None) -> None:
        """A reader of `chunks` and the blobs `blobs` gives, with caches of its own or those of `caches_of`."""
        self._chunks = chunks
        self._blobs = blobs
        # Every transaction makes a reader: building caches (and their locks) only to share others' cost it ~10 us.
        s = caches_of
        self._schemas: dict[BlobId, pa.Schema] = {} if s is None else s._schemas
        self._inline: _DecodedCache[pa.Table] = _DecodedCache(INLINE_CACHE_BYTES) if s is None else s._inline
        self._positions: _DecodedCache[pa.Array] = _DecodedCache(POSITIONS_CACHE_BYTES) if s is None else s._positions
        self._groups: _DecodedCache[pa.Table] = _DecodedCache(ROW_GROUP_CACHE_BYTES) if s is None else s._groups
        # The first row of each row group.
        self._starts: _DecodedCache[pa.Array] = _DecodedCache(POSITIONS_CACHE_BYTES) if s is None else s._starts

    def with_blobs(self, blobs: BlobGetter) -> RowReader:
        """A reader that finds blobs through `blobs` (e.g. a transaction's staged ones first), sharing
        this reader's caches of decoded schemas and inline rows."""
        return RowReader(self._chunks, blobs, caches_of=self)

    def remember_inline(self, chunk: ChunkId, rows: pa.Table) -> None:
        """Keep the rows of an inline chunk this process just committed, as its blob decodes."""
        self._inline.put(chunk, rows)

    def fragment(self, frag: FragmentState, columns: list[str] | None = None, *, table: str = "?") -> pa.Table:
        """All rows of one fragment (deleted ones included), optionally only some columns."""
        try:
            if frag.inline:
                data = self._inline.get(frag.chunk)
                if data is None:
                    data = decode_inline(self._blobs(BlobId(frag.chunk), BlobKind.ROWS))
                    self._inline.put(frag.chunk, data)
            else:
                present = None if columns is None else [c for c in columns if c in self.schema(frag.schema).names]
                path = self._chunks.verified_path(frag.chunk)
                # One row group (a keyed write's changed rows): a thread pool costs ~3x its decode.
                data = read_chunk(path, present, threads=frag.rows > ROW_GROUP_ROWS)
        except CorruptionError as exc:
            raise CorruptionError(f"table {table!r}: {exc}") from exc
        except pa.ArrowInvalid as exc:
            raise CorruptionError(f"table {table!r}: chunk {frag.chunk} is unreadable: {exc}") from exc
        if data.num_rows != frag.rows:
            raise CorruptionError(f"table {table!r}: chunk {frag.chunk} has {data.num_rows} rows, log says {frag.rows}")
        if columns is not None:
            data = data.select([c for c in columns if c in data.column_names])
        return data

    def rows_at(self, frag: FragmentState, positions: np.ndarray, *, table: str = "?") -> pa.Table:
        """The rows of a fragment at the given sorted positions (deleted or not), reading only the
        Parquet row groups that hold them (kept decoded: keyed writes of a few rows into a big table read
        the same groups again and again)."""
        if frag.inline:
            return self.fragment(frag, table=table).take(pa.array(positions))
        opened: list[pq.ParquetFile] = []

        def parquet() -> pq.ParquetFile:
            if not opened:
                try:
                    opened.append(pq.ParquetFile(self._chunks.verified_path(frag.chunk), memory_map=True))
                except CorruptionError as exc:
                    raise CorruptionError(f"table {table!r}: {exc}") from exc
            return opened[0]

        cached = self._starts.get(frag.chunk)
        if cached is None:
            meta = parquet().metadata
            cached = pa.array(np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]))
            self._starts.put(frag.chunk, cached)
        starts = cached.to_numpy()
        groups = np.searchsorted(starts, positions, side="right") - 1
        decoded: dict[int, pa.Table] = {}
        for g in np.unique(groups).tolist():
            data = self._groups.get(f"{frag.chunk}/{g}")
            if data is None:
                self._groups.put(f"{frag.chunk}/{g}", data := parquet().read_row_group(g))
            decoded[g] = data
        # Sorted positions, read group by group, keep their order; a few rows' zero-copy slices cost 1/5 of takes.
        at = positions - starts[groups]
        parts = ([decoded[g].slice(p, 1) for g, p in zip(groups.tolist(), at.tolist())] if len(at) <= _SLICED_ROWS
                 else [decoded[g].take(pa.array(at[groups == g])) for g in decoded])
        return pa.concat_tables(parts)

    def deleted_positions(self, frag: FragmentState) -> pa.Array:
        """Row positions deleted from a fragment (empty if none)."""
        if frag.deletes is None:
            return pa.array([], pa.uint32())
        positions = self._positions.get(frag.deletes)
        if positions is None:
            positions = read_vector(frag.deletes, self.vector_payload, self._positions.get)
            self._positions.put(frag.deletes, positions)
        return positions

    def vector_payload(self, vector: BlobId) -> bytes:
        """The DELETES payload of deletion vector `vector` (raises `CorruptionError` when it is missing)."""
        return self._blobs(vector, BlobKind.DELETES)

    def remember_vector(self, vector: BlobId, positions: pa.Array) -> None:
        """Keep the positions of deletion vector `vector` that this process just encoded, as its blob decodes."""
        self._positions.put(vector, positions)

    def known_vector(self, vector: BlobId) -> pa.Array | None:
        """The positions of deletion vector `vector` if this reader decoded them already."""
        return self._positions.get(vector)

    def schema(self, schema_id: BlobId) -> pa.Schema:
        """The Arrow schema stored as blob `schema_id`."""
        schema = self._schemas.get(schema_id)
        if schema is None:
            schema = self._schemas[schema_id] = decode_schema(self._blobs(schema_id, BlobKind.SCHEMA))
        return schema

    def live(self, frag: FragmentState, columns: list[str] | None = None, *, table: str = "?",
             with_position: bool = False) -> pa.Table:
        """The live rows of one fragment; `with_position` adds `__pos` (row position in the chunk)."""
        data = self.fragment(frag, columns, table=table)
        if with_position:
            data = data.append_column("__pos", pa.array(np.arange(frag.rows, dtype=np.uint32)))
        if frag.deletes is not None:
            data = data.filter(pa.array(self.keep_mask(frag)))
        return data

    def live_as(self, frag: FragmentState, schema: pa.Schema, *, table: str = "?",
                with_position: bool = False) -> pa.Table:
        """The live rows of one fragment under table schema `schema`: columns matched by id (a renamed
        column reads its stored name), missing ones null; `with_position` adds `__pos`."""
        stored = self.schema(frag.schema)
        names = stored_names(stored, schema)
        data = self.live(frag, list(names.values()), table=table, with_position=with_position)
        return conform(as_target(data, stored, schema), schema, extra=with_position)

    def rows_at_as(self, frag: FragmentState, positions: np.ndarray, schema: pa.Schema, *,
                   table: str = "?") -> pa.Table:
        """`rows_at` under table schema `schema` (columns matched by id, as `live_as`)."""
        data = self.rows_at(frag, positions, table=table)
        return conform(as_target(data, self.schema(frag.schema), schema), schema)

    def keep_mask(self, frag: FragmentState) -> np.ndarray:
        """One bool per row of the fragment: True for the rows not deleted."""
        keep = np.ones(frag.rows, dtype=bool)
        keep[np.asarray(self.deleted_positions(frag), dtype=np.int64)] = False
        return keep

    def table(self, name: str, state: TableState, columns: list[str] | None = None,
              with_position: bool = False) -> pa.Table:
        """Every live row of a table, conformed to its current schema.

        With `with_position`, adds `__frag` (index into `state.fragments`) and `__pos`.
        """
        schema = self.schema(state.schema)
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        parts = []
        for index, frag in enumerate(state.fragments):
            part = self.live_as(frag, schema, table=name, with_position=with_position)
            if with_position:
                part = part.append_column("__frag", pa.array(np.full(part.num_rows, index, dtype=np.uint32)))
            parts.append(part)
        if not parts:
            empty = schema
            if with_position:
                empty = empty.append(pa.field("__pos", pa.uint32())).append(pa.field("__frag", pa.uint32()))
            return empty.empty_table()
        return pa.concat_tables(parts)

    def key_column(self, frag: FragmentState, field: pa.Field) -> pa.ChunkedArray:
        """Every row's key (column `field`) of one fragment, deleted rows included: what the key index indexes."""
        stored = self.schema(frag.schema)
        name = stored_names(stored, pa.schema([field])).get(field.name)
        if name is not None and stored.field(name).type.equals(field.type):  # as stored: nothing to conform
            return self.fragment(frag, [name]).column(0)
        return self.live_as(frag._replace(deletes=None), pa.schema([field])).column(0)

    def rows_at_hits(self, name: str, state: TableState, hits: pa.Table) -> pa.Table:
        """The live rows at (`__frag`, `__pos`) `hits`, conformed to the table's schema, with `__pos`
        and `__frag`: a keyed write reads the rows its keys match, not the whole table."""
        schema = self.schema(state.schema)
        frags = hits.column("__frag").to_numpy()
        positions = hits.column("__pos").to_numpy()
        parts = []
        for index in np.unique(frags):
            at = np.sort(positions[frags == index]).astype(np.int64)
            part = self.rows_at_as(state.fragments[int(index)], at, schema, table=name)
            parts.append(part.append_column("__pos", pa.array(at.astype(np.uint32)))
                         .append_column("__frag", pa.array(np.full(len(at), index, dtype=np.uint32))))
        if not parts:
            return self.table(name, TableState(state.schema, state.primary_key), with_position=True)
        return pa.concat_tables(parts)
