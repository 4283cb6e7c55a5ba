"""The write engine: stage one transaction's changes as `TableOp`s over a base snapshot.

Rows become chunks (inline blobs for small batches, Parquet files written durably as they are staged,
deduplicated by content id), deleted rows become deletion vectors, keyed writes keep before-images.
Transactions, merges, reverts, rebases, compaction and the rewrites of `udr.materialize.compaction` (the
flush of small writes, merges of delta fragments) all stage through a `Staging`; nothing here is visible to
anyone until the facade appends the resulting ops to the log. A `Staging` belongs to one thread at a time.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain, islice
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import pyarrow as pa

from udr.errors import TableNotFound, close_matches
from udr.log import format as lake_format
from udr.log.commits import Deletes, Fragment, TableOp
from udr.log.format import (
    INLINE_MAX_BYTES,
    ROW_GROUP_ROWS,
    ROW_GROUPS_PER_CHUNK,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.hashing import content_id
from udr.log.pins import hold_chunk, release_chunks
from udr.log.protocols import LakeLog
from udr.materialize import schemas
from udr.materialize.befores import stores_image
from udr.materialize.data import (
    EncodedChunk,
    RowReader,
    decode_inline,
    encode_chunk,
    encode_inline,
    encode_schema,
    rebatch,
    store_parquet,
)
from udr.materialize.encodings import encode_before
from udr.materialize.fold import apply_op
from udr.materialize.keyhashes import KeyedWrites
from udr.materialize.pieces import inline_candidate
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import chain_link, encode_vector, read_vector, united

_ENCODE_THREADS = max(2, min(4, os.cpu_count() or 2))
# What `op` gives for a table nothing was staged for (ops are immutable; building one per call cost ~1%).
_NO_OP = TableOp()

# The row counters of a `TableOp` that a staged write adds to.
CountField = Literal["inserted", "updated", "deleted"]


# The fields of a `TableOp` that `delete_positions` replaces, so `replace(op, **changes)` type-checks.
class _DeleteChanges(TypedDict, total=False):
    deletes: tuple[Deletes, ...]
    inserted: int
    updated: int
    deleted: int


class Staging:
    """The changes staged over commit `base` of one branch, one `TableOp` per table.

    Attributes:
        branch: the branch the changes are meant for (named in errors).
        base: the commit the changes apply to; `rebase_to` moves it.
        base_tables: the snapshot of `base`.
        ops: the staged op of each changed table.
        blobs: schemas, inline rows, deletion vectors and before-images the ops name, not yet in the log.
        writes: write calls per table (counts of several calls are recomputed as the net change).
        overwritten: tables without a key overwritten here (stored as a multiset delta of the whole table,
            so any concurrent change of them conflicts).
        refreshed: keyed tables overwritten here (their runs of delta fragments may be due for a merge).
        ids_used: a staged schema carries stable column ids (an older lake must be relabelled first).
        keyed: the keys the keyed writes staged here touched, per table (`keyhashes`).
        rows: reads rows of table states, this staging's blobs first.
    """

    def __init__(self, log: LakeLog, rows: RowReader, base: CommitId, base_tables: Mapping[str, TableState], *,
                 branch: str) -> None:
        self._log = log
        self.branch = branch
        self.base = base
        self.base_tables = dict(base_tables)
        self.ops: dict[str, TableOp] = {}
        self.blobs: dict[BlobId, tuple[BlobKind, bytes]] = {}
        # Before-images of keyed writes, kept only while that write is the table's sole change here.
        self._before: dict[str, pa.Table] = {}
        self._before_ops: dict[str, TableOp] = {}
        self.writes: Counter[str] = Counter()
        self.overwritten: set[str] = set()
        self.refreshed: set[str] = set()
        self.ids_used = False
        self.keyed = KeyedWrites()
        self._chunks: set[ChunkId] = set()
        # Rows of the inline chunks staged here, handed to the lake's reader once committed.
        self._inline_rows: dict[ChunkId, pa.Table] = {}
        self.rows = rows.with_blobs(self.blob)
        self._pool: ThreadPoolExecutor | None = None
        self._applied: dict[str, tuple[TableOp, TableState | None, TableState | None]] = {}

    # -- reading ----------------------------------------------------------------------------------------

    def blob(self, blob: BlobId, kind: BlobKind) -> bytes:
        """A blob staged here, else the log's."""
        staged = self.blobs.get(blob)
        return staged[1] if staged is not None else self._log.get_blob(blob, kind)

    def tables(self) -> list[str]:
        """Names of the tables with the staged changes applied."""
        return sorted(n for n in set(self.base_tables) | set(self.ops) if self.state(n) is not None)

    def state(self, table: str) -> TableState | None:
        """`table` with its staged op applied (None: no such table)."""
        op = self.ops.get(table)
        base = self.base_tables.get(table)
        if op is None:
            return base
        # Asked several times per keyed write and rebase; applying walks every fragment. Ops and states are
        # immutable, and every change stages a new op, so the same op over the same base gives the same state.
        applied = self._applied.get(table)
        if applied is None or applied[0] is not op or applied[1] is not base:
            applied = self._applied[table] = (op, base, apply_op(base, op))
        return applied[2]

    def require(self, table: str) -> TableState:
        """`state`, raising `TableNotFound` for a missing table."""
        state = self.state(table) if isinstance(table, str) else None
        if state is None:
            raise TableNotFound(
                f"table {table!r} does not exist on branch {self.branch!r}" + close_matches(str(table), self.tables())
            )
        return state

    def op(self, table: str) -> TableOp:
        """The op staged for `table` (an empty one if none)."""
        return self.ops.get(table) or _NO_OP

    def own_fragments(self, table: str, state: TableState) -> list[FragmentState]:
        """The fragments of `state` that this staging added."""
        own = {f.chunk for f in self.op(table).add}
        return [f for f in state.fragments if f.chunk in own]

    def inline_rows(self, chunk: ChunkId) -> pa.Table | None:
        """The rows of an inline chunk staged here (None: not one)."""
        return self._inline_rows.get(chunk)

    # -- staging ----------------------------------------------------------------------------------------

    def create(self, table: str, schema: pa.Schema, pk: tuple[str, ...] | None) -> None:
        """Stage `table` as a new empty table (replacing the base's table of that name)."""
        schema_id, payload = encode_schema(schema)
        self.blobs[schema_id] = (BlobKind.SCHEMA, payload)
        base = self.base_tables.get(table)
        self.ops[table] = TableOp(create=True, schema=schema_id, primary_key=pk,
                                  deleted=base.rows if base is not None else 0)

    def replace_table(self, table: str, target: TableState | None) -> None:
        """Stage `table` to become exactly `target` (zero-copy: the target's chunks are reused; None drops it)."""
        if target is None:
            if self.state(table) is not None:
                self.drop(table)
            return
        self.ops[table] = TableOp(
            create=True,
            schema=target.schema,
            primary_key=target.primary_key,
            add=tuple(Fragment(f.chunk, f.rows, f.inline, f.schema) for f in target.fragments),
            deletes=tuple(Deletes(f.chunk, f.deletes, f.deleted) for f in target.fragments if f.deletes is not None),
        )

    def drop(self, table: str) -> None:
        """Stage the removal of `table`."""
        base = self.base_tables.get(table)
        if base is None:
            del self.ops[table]
        else:
            self.ops[table] = TableOp(drop=True, deleted=base.rows)

    def truncate(self, table: str, state: TableState) -> None:
        """Stage the removal of every row of `table` (whose current state is `state`) before new rows."""
        own = sum(f.live_rows for f in self.own_fragments(table, state))
        op = self.op(table)
        self.ops[table] = replace(op, truncate=True, add=(), deletes=(), inserted=op.inserted - own,
                                  deleted=op.deleted + state.rows - own)

    def stage_schema(self, table: str, schema: pa.Schema) -> None:
        """Stage `schema` as the table's. A new column whose id older chunks still store (a dropped
        column of that name) gets a fresh id, so the dropped values never reappear."""
        state = self.require(table)
        stored = {schemas.field_id(f) for s in {f.schema for f in state.fragments} for f in self.rows.schema(s)}
        schema = schemas.with_fresh_ids(schema, self.rows.schema(state.schema), stored)
        self.ids_used = self.ids_used or schemas.has_ids(schema)
        schema_id, payload = encode_schema(schema)
        self.blobs[schema_id] = (BlobKind.SCHEMA, payload)
        self.ops[table] = replace(self.op(table), schema=schema_id)

    def add_rows(self, table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], *,
                 counted: CountField = "inserted", streaming: bool = False, inline: bool = True) -> int:
        """Encode rows as chunks (inline or Parquet) and stage them as fragments of `table`; return the rows.

        In-memory input is written by a thread pool, one chunk per thread. A stream is written as it is
        read, one row group at a time, so its memory stays near one row group whatever its length.
        """
        fragments: list[Fragment] = []
        collect = self._collector(table, fragments)
        pieces: Iterator[pa.Table] = (p if p.schema.equals(schema) else p.cast(schema)
                                      for p in rebatch(batches, ROW_GROUP_ROWS))
        schema_id = self.require(table).schema
        pending: list[Future[EncodedChunk]] = []
        try:
            while True:
                head, size = inline_candidate(pieces)
                if not head:
                    break
                if inline and size <= INLINE_MAX_BYTES:
                    collect(encode_inline(pa.concat_tables(head), schema_id, parquet=self._parquet_inline))
                    continue
                rest = islice(pieces, ROW_GROUPS_PER_CHUNK - len(head))
                if streaming:
                    collect(store_parquet(chain(head, rest), schema, schema_id, self._store_file))
                    continue
                chunk = head + list(rest)
                following = next(pieces, None)
                if following is None and not pending:
                    # The only chunk (e.g. a keyed UPDATE's new rows): a worker would add only its hand-off.
                    collect(store_parquet(chunk, schema, schema_id, self._store_file))
                    break
                pieces = chain([following], pieces) if following is not None else pieces
                pending.append(self.pool().submit(store_parquet, chunk, schema, schema_id, self._store_file))
                while len(pending) > _ENCODE_THREADS:
                    collect(pending.pop(0).result())
            for future in pending:
                collect(future.result())
        finally:
            # On an error, chunks still encoding must not outlive the call (nor one not started begin).
            for future in pending:
                future.cancel()
            if pending:  # waiting on no future still builds a waiter (~5 us of a small write)
                wait(pending)
        return self._stage_fragments(table, fragments, counted)

    def add_files(self, table: str, files: list[tuple[Path, int]]) -> int:
        """Stage Parquet files written elsewhere (`udr.query` has DuckDB write them), each given with its row
        count, as chunks of `table` in order; each file is moved into the chunk store. Return the rows.

        A file must be a chunk of the table's current schema: its columns under the names the table
        gives them, readable as the table's types.
        """
        fragments: list[Fragment] = []
        collect = self._collector(table, fragments)
        schema_id = self.require(table).schema
        for path, rows in files:
            collect(EncodedChunk(Fragment(self._store_file(_moved_from(path)), rows, False, schema_id), None))
        return self._stage_fragments(table, fragments, "inserted")

    def _stage_fragments(self, table: str, fragments: list[Fragment], counted: CountField) -> int:
        rows = sum(f.rows for f in fragments)
        op = self.op(table)
        self.ops[table] = replace(op, add=op.add + tuple(fragments), **{counted: getattr(op, counted) + rows})
        return rows

    def _collector(self, table: str, fragments: list[Fragment]) -> Callable[[EncodedChunk], None]:
        """How `add_rows` keeps each encoded chunk: a chunk whose id the table holds already (identical rows
        written again) is re-encoded as a numbered copy, so each fragment names its own chunk."""
        state = self.require(table)
        op = self.op(table)
        # Chunks this staging already adds or removes count too: a fragment it deleted whole must
        # not share an id with rows it writes again.
        staged = {f.chunk for f in op.add} | {d.chunk for d in op.deletes}
        present: set[ChunkId] = set()  # the table's chunks and `staged`, gathered only when needed

        def collect(encoded: EncodedChunk) -> None:
            # Only bytes stored before can be in the table already: a new inline chunk (the common small
            # write) is not in the log, so a long table's chunk ids are not gathered for it.
            if encoded.fragment.chunk in staged or encoded.payload is None or self._log.has_blob(
                    BlobId(encoded.fragment.chunk)):
                if not present:
                    present.update(state.chunk_ids())
                present.update(staged)
                # Start past the table's fragment count so repeated identical appends collide at most once.
                copy = len(present)
                while encoded.fragment.chunk in present:
                    copy += 1
                    encoded = encode_chunk(self._encoded_rows(encoded), state.schema, self._store_file, copy=copy,
                                           parquet=self._parquet_inline)
                present.add(encoded.fragment.chunk)
            staged.add(encoded.fragment.chunk)
            if encoded.payload is not None:
                self.blobs[BlobId(encoded.fragment.chunk)] = (BlobKind.ROWS, encoded.payload)
                if encoded.rows is not None:
                    self._inline_rows[encoded.fragment.chunk] = encoded.rows
            fragments.append(encoded.fragment)

        return collect

    @property
    def _parquet_inline(self) -> bool:
        """Whether inline rows may be Parquet (a lake of format 4 or later: older readers expect IPC)."""
        return self._log.version >= lake_format.PARQUET_INLINE_VERSION

    def _encoded_rows(self, encoded: EncodedChunk) -> pa.Table:
        """The rows of a chunk just encoded (read back from its payload or file)."""
        frag = encoded.fragment
        if encoded.payload is not None:
            return decode_inline(encoded.payload)
        # Under the table's schema exactly: a file DuckDB wrote reads back with some columns not nullable.
        state = FragmentState(frag.chunk, frag.rows, False, frag.schema)
        return self.rows.live_as(state, self.rows.schema(frag.schema))

    def _store_file(self, write: Callable[[Path], None]) -> ChunkId:
        def announce(chunk: ChunkId) -> None:
            # The intent is durable before the chunk has its final name, so a concurrent gc never
            # deletes a chunk this staging is about to commit.
            self._log.register_intents([chunk])
            if chunk not in self._chunks:
                self._chunks.add(chunk)
                hold_chunk(self._log, chunk)

        return self._log.chunks.put_written(write, announce)

    def delete_positions(self, table: str, state: TableState, hits: pa.Table, *, counted: CountField | None) -> None:
        """Stage the deletion of the rows of `state` that `hits` names (`__frag`, `__pos`), counted as
        `counted` (None: not counted, e.g. the old versions of updated rows)."""
        if hits.num_rows == 0:
            return
        op = self.op(table)
        deletes = {d.chunk: d for d in op.deletes}
        frags = np.asarray(hits.column("__frag").to_numpy(), dtype=np.int64)
        positions = hits.column("__pos").to_numpy()
        touched = sorted(set(frags.tolist()))
        for index in touched:
            frag = state.fragments[index]
            new = positions[frags == index]
            earlier = deletes.get(frag.chunk)
            if earlier is None:
                vector, added = united(self.rows.deleted_positions(frag), new)
                deletes[frag.chunk] = self.deletion(frag, vector, added=added)
            elif earlier.vector is not None:  # None: every row of the fragment is deleted already
                deletes[frag.chunk] = self.deletion(frag, united(self.vector(earlier.vector), new)[0])
        changes: _DeleteChanges = {"deletes": tuple(deletes.values())}
        if counted is not None:
            # Rows this staging added itself were never visible: deleting them un-inserts them.
            own = {f.chunk for f in op.add}
            mine = sum(int(np.count_nonzero(frags == i)) for i in touched if state.fragments[i].chunk in own)
            changes["inserted"] = op.inserted - mine
            changes[counted] = getattr(op, counted) + hits.num_rows - mine
        self.ops[table] = replace(op, **changes)

    def deletion(self, frag: FragmentState, positions: np.ndarray, *, added: np.ndarray | None = None) -> Deletes:
        """The cumulative deletion vector of `frag` removing the sorted distinct `positions`, staged; `added`:
        those of them `frag`'s own vector lacks, when the caller knows (its vector is then not read back)."""
        if len(positions) == frag.rows:
            return Deletes(frag.chunk, None, len(positions))
        base = self._committed(frag.deletes) if self._log.version >= lake_format.CHAINED_VECTORS_VERSION else None
        payload = encode_vector(positions, base, self._vector_payload, self.rows.known_vector,
                                gaps=self._log.version >= lake_format.GAPS_VECTORS_VERSION,
                                added=added if base is not None and base == frag.deletes else None)
        blob = BlobId(content_id(payload))
        self.blobs[blob] = (BlobKind.DELETES, payload)
        # The next keyed write to this fragment, and a rebase of this one, look the vector up again.
        self.rows.remember_vector(blob, pa.array(positions, pa.uint32()))
        return Deletes(frag.chunk, blob, len(positions))

    def vector(self, vector: BlobId) -> pa.Array:
        """Every position deletion vector `vector` (staged here or committed) names."""
        return read_vector(vector, self._vector_payload, self.rows.known_vector)

    def _vector_payload(self, vector: BlobId) -> bytes:
        return self.blob(vector, BlobKind.DELETES)

    def named_blobs(self) -> dict[BlobId, tuple[BlobKind, bytes]]:
        """The staged blobs a commit stores: all but the deletion vectors no op names any more (a later
        deletion from the same fragment, such as a keyed write's removed rows after its updated ones,
        replaced them), keeping the staged vectors that named ones chain onto."""
        named = {d.vector for op in self.ops.values() for d in op.deletes if d.vector is not None}
        for vector in list(named):
            link: BlobId | None = vector
            while link in self.blobs and (link := chain_link(self.blobs[link][1])[0]) is not None:
                named.add(link)
        return {blob: staged for blob, staged in self.blobs.items() if staged[0] != BlobKind.DELETES or blob in named}

    def _committed(self, vector: BlobId | None) -> BlobId | None:
        """`vector`, or for one staged here the committed vector it chains onto (a staged vector is replaced
        by the next deletion from its fragment, so nothing may chain onto it)."""
        while vector is not None and vector in self.blobs:
            vector = chain_link(self.blobs[vector][1])[0]
        return vector

    def set_primary_key(self, table: str, key: tuple[str, ...]) -> None:
        """Stage `key` as the table's primary key."""
        self.ops[table] = replace(self.op(table), primary_key=key)

    def recount(self, table: str, inserted: int, updated: int, deleted: int) -> None:
        """Replace the row counts of `table`'s op."""
        self.ops[table] = replace(self.op(table), inserted=inserted, updated=updated, deleted=deleted)

    # -- keyed writes' before-images --------------------------------------------------------------------

    def keep_before(self, table: str, image: pa.Table | None) -> None:
        """Keep `image` (the replaced and removed rows of the keyed write just staged, None: none) as the
        table's before-image while that write stays its only change; any other change makes it stale."""
        if image is not None:
            self._before[table] = image
            self._before_ops[table] = self.op(table)
        else:
            self._before.pop(table, None)

    def settle_before_images(self) -> None:
        """Attach each before-image still valid that the log stores (`befores.stores_image`) to its op."""
        for table, (op, image) in self.unstored_before_images().items():
            if stores_image(image.num_rows, op, self.base_tables.get(table)):
                payload = encode_before(image)
                blob = BlobId(content_id(payload))
                self.blobs[blob] = (BlobKind.BEFORE, payload)
                self.ops[table] = replace(op, before=blob)

    def unstored_before_images(self) -> dict[str, tuple[TableOp, pa.Table]]:
        """The valid before-images no op carries yet (after `settle_before_images`: those left out of the log)."""
        return {table: (op, image) for table, image in self._before.items()
                if (op := self.ops.get(table)) is not None and self._before_ops.get(table) is op}

    # -- maintenance --------------------------------------------------------------------------------------

    def compact(self, table: str) -> None:
        """Stage `table`'s live rows rewritten into fresh chunks; no row changes (a `rewrite`)."""
        state = self.require(table)
        data = self.rows.table(table, state)
        self.ops[table] = TableOp(truncate=True, rewrite=True)
        self.add_rows(table, data.schema, iter(data.to_batches()), counted="inserted")
        self.ops[table] = replace(self.ops[table], inserted=0)

    # -- lifecycle ------------------------------------------------------------------------------------

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo every change staged inside the block if it raises (chunks it wrote are left to `gc`)."""
        saved = (dict(self.ops), dict(self.blobs), Counter(self.writes), dict(self._before), dict(self._before_ops))
        try:
            yield
        except BaseException:
            self.ops, self.blobs, self.writes, self._before, self._before_ops = saved
            raise

    def rebase_to(self, head: CommitId, snapshot: Mapping[str, TableState], tables: list[str]) -> dict[str, TableOp]:
        """Make `head` (whose snapshot is `snapshot`) the base, and take back the ops of `tables` for
        re-staging on it (their before-images are dropped: they describe the old base)."""
        self.base, self.base_tables = head, dict(snapshot)
        taken = {t: self.ops.pop(t) for t in tables}
        for table in tables:
            self._before.pop(table, None)
        return taken

    def pool(self) -> ThreadPoolExecutor:
        """This staging's worker threads (encoding chunks, comparing columns), started on first use: one
        pool for all of a transaction's writes, where one per write cost a 78-table refresh ~0.35 s."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_ENCODE_THREADS)
        return self._pool

    def release(self) -> None:
        """Stop protecting this staging's chunks from `gc` (it committed or was abandoned); stop its threads."""
        # Its reader looks blobs up through this staging, a reference cycle that left every transaction to the
        # cyclic garbage collector (whose passes over a long-lived process's objects cost a W2 commit ~10%).
        self.rows = self.rows.with_blobs(self._log.get_blob)
        release_chunks(self._log, self._chunks)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _moved_from(source: Path) -> Callable[[Path], None]:
    """A chunk writer that moves the finished file `source` to the temp path it is given (a rename when both
    are in the lake's tmp directory: the bytes are not copied)."""

    def move(temp: Path) -> None:
        os.replace(source, temp)

    return move

