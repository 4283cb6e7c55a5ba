"""Erasure, for the facade: remove rows by primary key from every version of a table's history.

`erase` reads every fragment, deletion vector and before-image the table ever had (as readers see them,
through earlier erasures), rewrites each chunk holding an erased key with those rows all-null (same
positions), and commits an erasure commit whose metadata names the replacement map (`udr.log.erasure`), the
reason and a BLAKE3 hash of each erased key. Readers then fold every commit through the map; `gc` frees the
old chunks and blobs. Writes follow the commit order of `udr.log.store`: new chunks (registered as intents
and held) and blobs first, then the one LMDB transaction that appends the commit and indexes the map, and
which refuses to land if a commit changed the table since the erasure read the log. Safe across threads and processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from udr.api.context import LakeContext
from udr.api.inputs import TableData, to_batches
from udr.errors import (
    ConflictError,
    KeyViolation,
    SchemaError,
    TableNotFound,
    UsageError,
)
from udr.log import refspec
from udr.log.commits import CommitRecord, Fragment, TableOp, commit_value
from udr.log.erasure import Erasure, ErasureStore
from udr.log.format import (
    ERASURE_KEY,
    ERASURE_KEYS,
    ERASURE_REASON,
    ERASURE_TABLE,
    ERASURE_VERSION,
    ROW_GROUP_ROWS,
    BlobId,
    BlobKind,
    ChunkId,
)
from udr.log.hashing import content_id
from udr.log.pins import hold_chunk, release_chunks
from udr.materialize.data import encode_inline, rebatch, store_parquet
from udr.materialize.encodings import decode_before, encode_before
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import distinct_positions, encode_positions, read_vector
from udr.values import Commit

_POS = "__pos"


@dataclass(slots=True)
class _Plan:
    """What one erasure writes: the map, the blobs to store with the commit, and the chunk files it made."""

    erasure: Erasure = field(default_factory=Erasure)
    blobs: dict[BlobId, tuple[BlobKind, bytes]] = field(default_factory=dict)
    chunks: list[ChunkId] = field(default_factory=list)

    def blob(self, kind: BlobKind, payload: bytes) -> BlobId:
        blob = BlobId(content_id(payload))
        self.blobs[blob] = (kind, payload)
        return blob


def erase(ctx: LakeContext, table: str, keys: TableData, *, reason: str, branch: str, author: str) -> Commit:
    """Remove the rows of `table` whose primary key is in `keys` from every version; return the erasure commit."""
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError("erase(..., reason=...) needs a reason: it is recorded with the erasure")
    head = refspec.branch_head(ctx.log, branch)
    state = ctx.materializer.snapshot(head).get(table)
    if state is None:
        raise TableNotFound(f"table {table!r} does not exist on branch {branch!r}; erase from the branch that has it")
    if not state.primary_key:
        raise KeyViolation(f"table {table!r} has no primary key: erase removes rows by key")
    wanted = _wanted(ctx, table, state, keys)
    seen = ctx.log.last_seq()
    plan = _Plan()
    try:
        _rewrite_history(ctx, table, state, wanted, seen, plan)
        gone = _live_matches(ctx, table, state, wanted)
        op = TableOp(before=plan.blob(BlobKind.BEFORE, encode_before(gone)) if gone.num_rows else None,
                     deleted=gone.num_rows)
        mapping = plan.blob(BlobKind.ERASURE, plan.erasure.encode())
        hashes = sorted(_key_hash(row) for row in wanted.to_pylist())
        record = CommitRecord(
            parents=(head,), seq=0, branch=branch, time_us=0, author=author,
            message=f"erase {len(hashes)} key(s) from {table}: {reason}",
            metadata={ERASURE_KEY: mapping, ERASURE_REASON: reason, ERASURE_TABLE: table,
                      ERASURE_KEYS: ",".join(hashes)},
            tables={table: op},
        )
        # An older udr would read the replaced chunks as they were: relabel before the commit point.
        ctx.log.upgrade_format(ERASURE_VERSION)
        hook = ErasureStore.of(ctx.log).index_hook(
            mapping, plan.erasure, plan.chunks, lambda: _unchanged(ctx, table, seen))
        # Placed on a moved head when the commits in between left the table alone (its before-image holds).
        cid, final = ctx.log.append(record, base=head, rebase=True, blobs=plan.blobs, hook=hook)
    finally:
        release_chunks(ctx.log, plan.chunks)
    return commit_value(cid, final)


def _unchanged(ctx: LakeContext, table: str, seen: int) -> None:
    """Inside the erasure's commit transaction (the log's write lock held): no commit since seq `seen`, on any
    branch, touched `table`, so the map covers every chunk and deletion vector the table has."""
    for _, cid in ctx.log.commits_from(seen + 1):
        if table in ctx.log.get_commit(cid).tables:
            raise ConflictError(f"commit {cid[:10]} changed table {table!r} while the erasure read its history; "
                                "erase again")


def _wanted(ctx: LakeContext, table: str, state: TableState, keys: TableData) -> pa.Table:
    """The distinct keys to erase, typed as the table's key columns."""
    key = list(state.primary_key or ())
    if isinstance(keys, list) and all(isinstance(k, dict) for k in keys):
        keys = pa.Table.from_pylist(keys)
    schema, batches = to_batches(keys, table)
    if sorted(schema.names) != sorted(key):
        raise UsageError(f"table {table!r} is keyed by ({', '.join(key)}); erase needs exactly those columns")
    data = pa.Table.from_batches(list(batches), schema)
    if not data.num_rows:
        raise UsageError("erase needs at least one key")
    target = ctx.rows.schema(state.schema)
    try:
        typed = pa.table([data.column(k).cast(target.field(k).type) for k in key], names=key)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"table {table!r}: the keys to erase do not fit its key columns ({exc})") from exc
    return typed.group_by(key).aggregate([])


def _key_hash(row: dict[str, object]) -> str:
    return content_id(json.dumps(row, sort_keys=True, default=str, separators=(",", ":")).encode())


def _history(ctx: LakeContext, table: str, seen: int) -> Iterator[TableOp]:
    """Every op on `table` in the log up to seq `seen`, as readers see it."""
    for seq, cid in ctx.log.commits_from(0):
        if seq > seen:
            break
        op = ctx.materializer.replaced(ctx.log.get_commit(cid)).tables.get(table)
        if op is not None:
            yield op


def _rewrite_history(ctx: LakeContext, table: str, state: TableState, wanted: pa.Table, seen: int,
                     plan: _Plan) -> None:
    fragments: dict[ChunkId, Fragment] = {}
    vectors: dict[ChunkId, set[BlobId]] = {}
    befores: set[BlobId] = set()
    log = ctx.log
    # What retention expired and gc deleted is skipped: no version anyone reads holds it, and no byte is left.
    for op in _history(ctx, table, seen):
        fragments.update((f.chunk, f) for f in op.add
                         if (log.has_blob(BlobId(f.chunk)) if f.inline else log.chunks.exists(f.chunk)))
        for d in op.deletes:
            if d.vector is not None and log.has_blob(d.vector):
                vectors.setdefault(d.chunk, set()).add(d.vector)
        if op.before is not None and log.has_blob(op.before):
            befores.add(op.before)
    key = list(state.primary_key or ())
    chunks, merged = dict(plan.erasure.chunks), dict(plan.erasure.vectors)
    for frag in fragments.values():
        found = _rewrite_chunk(ctx, table, frag, key, state, wanted, plan)
        if found is None:
            continue
        new, positions = found
        chunks[frag.chunk] = (new, plan.blob(BlobKind.DELETES, encode_positions(positions)), len(positions))
        for vector in vectors.get(frag.chunk, ()):
            whole = read_vector(vector, lambda b: ctx.log.get_blob(b, BlobKind.DELETES))
            union = distinct_positions(whole, positions)
            merged[(frag.chunk, vector)] = (plan.blob(BlobKind.DELETES, encode_positions(union)), len(union))
    blobs = {}
    for before in befores:
        image = decode_before(ctx.log.get_blob(before, BlobKind.BEFORE))
        if not set(key) <= set(image.column_names):
            continue
        keep = _matches(image, key, wanted, invert=True)
        if keep.num_rows < image.num_rows:
            blobs[before] = plan.blob(BlobKind.BEFORE, encode_before(keep))
    plan.erasure = Erasure(chunks, merged, blobs)


def _matches(data: pa.Table, key: list[str], wanted: pa.Table, *, invert: bool = False) -> pa.Table:
    """The rows of `data` whose key is in `wanted` (or, `invert`, is not), in their order, with `__pos`."""
    tagged = data.append_column(_POS, pa.array(np.arange(data.num_rows, dtype=np.int64)))
    typed = pa.table([tagged.column(k).cast(wanted.column(k).type) for k in key] + [tagged.column(_POS)],
                     names=[*key, _POS])
    hits = np.sort(typed.join(wanted, keys=key, join_type="inner").column(_POS).to_numpy())
    if invert:
        keep = np.ones(data.num_rows, dtype=bool)
        keep[hits] = False
        return data.filter(pa.array(keep))
    return tagged.take(pa.array(hits))


def _rewrite_chunk(ctx: LakeContext, table: str, frag: Fragment, key: list[str], state: TableState,
                   wanted: pa.Table, plan: _Plan) -> tuple[ChunkId, np.ndarray] | None:
    """Write `frag`'s chunk again with the erased rows all-null; None if it holds none of `wanted`."""
    loose = FragmentState(frag.chunk, frag.rows, frag.inline, frag.schema)
    table_schema = ctx.rows.schema(state.schema)
    keys = ctx.rows.live_as(loose, pa.schema([table_schema.field(k) for k in key]), table=table)
    positions = _matches(keys, key, wanted).column(_POS).to_numpy().astype(np.uint32)
    if not len(positions):
        return None
    data = ctx.rows.fragment(loose, table=table)
    erased = np.zeros(data.num_rows, dtype=bool)
    erased[positions] = True
    nullable = pa.schema([f.with_nullable(True) for f in data.schema], metadata=data.schema.metadata)
    blank = data.cast(nullable).take(pa.array(np.arange(data.num_rows), mask=erased))
    if frag.inline:
        encoded = encode_inline(blank, frag.schema)
        assert encoded.payload is not None
        plan.blob(BlobKind.ROWS, encoded.payload)
        return encoded.fragment.chunk, positions

    def announce(chunk: ChunkId) -> None:
        # Registered and held before the file gets its name: a concurrent gc must not take it.
        ctx.log.register_intents([chunk])
        hold_chunk(ctx.log, chunk)
        plan.chunks.append(chunk)

    written = store_parquet(rebatch(iter(blank.to_batches()), ROW_GROUP_ROWS), blank.schema, frag.schema,
                            lambda write: ctx.log.chunks.put_written(write, announce))
    return written.fragment.chunk, positions


def _live_matches(ctx: LakeContext, table: str, state: TableState, wanted: pa.Table) -> pa.Table:
    """The before-image of the erasure commit: the erased keys live at the head, as deleted rows (keys only)."""
    key = list(state.primary_key or ())
    schema = ctx.rows.schema(state.schema)
    keys_schema = pa.schema([schema.field(k) for k in key])
    parts = [_matches(ctx.rows.live_as(f, keys_schema, table=table), key, wanted) for f in state.fragments]
    found = pa.concat_tables(parts).select(key) if parts else keys_schema.empty_table()
    n = found.num_rows
    return (found.append_column("__deleted", pa.array(np.ones(n, dtype=bool)))
            .append_column("__mask", pa.array(np.zeros(n, dtype=np.uint64))))
