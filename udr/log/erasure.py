"""Erasures: which chunks and blobs an erasure replaced, and how readers see every commit through that.

Commit records are immutable and hash-chained, so an erasure cannot edit the chunk ids they name. Instead an
erasure commit carries (in its metadata, `ERASURE_KEY`) the id of an ERASURE blob: its *replacement map*.
For each chunk (Parquet file or inline rows) that held an erased row: the chunk that replaces it, with the
same rows at the same positions except that erased rows are all-null, and the deletion vector of the erased
positions; for each deletion vector any commit recorded on such a chunk, the vector merged with the erased
positions; for each before-image holding an erased key, the before-image without it. Positions never move,
so every deletion vector stays valid. Readers fold every commit through every map in order (`replace_op`):
an erased row is deleted in every version, its bytes live in no chunk a version needs, and `gc` frees the
old chunks and blobs. The map's id is hashed into the erasure commit, so `verify` checks it like any blob.

Durable index (written in the erasure commit's own LMDB transaction): `erasures`: 8-byte big-endian ordinal
-> map blob id (their count is the *generation* readers cache by); `replaced`: each replaced chunk or blob
id -> map blob id (a commit adding deletes to a replaced chunk, staged before the erasure, is refused).
Pure functions and one-transaction methods; safe across threads and processes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from udr.errors import CorruptionError
from udr.log.commits import CommitRecord, Deletes, TableOp
from udr.log.envtypes import Environment, IndexTxn
from udr.log.format import (
    DB_ERASURES,
    DB_INTENTS,
    DB_REPLACED,
    BlobId,
    BlobKind,
    ChunkId,
    record_json,
)

BlobGetter = Callable[[BlobId, BlobKind], bytes]
CommitHook = Callable[[IndexTxn, Environment], None]


@dataclass(frozen=True, slots=True)
class Erasure:
    """One erasure's replacement map (see the module docstring)."""

    # old chunk -> (new chunk, deletion vector of the erased positions, how many)
    chunks: Mapping[ChunkId, tuple[ChunkId, BlobId, int]] = field(default_factory=dict)
    # (old chunk, a deletion vector recorded on it) -> (that vector merged with the erased positions, count)
    vectors: Mapping[tuple[ChunkId, BlobId], tuple[BlobId, int]] = field(default_factory=dict)
    # old before-image -> the before-image without the erased keys
    blobs: Mapping[BlobId, BlobId] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The canonical JSON payload of the map's ERASURE blob."""
        doc = {
            "chunks": {old: list(new) for old, new in self.chunks.items()},
            "vectors": [[c, v, *new] for (c, v), new in self.vectors.items()],
            "blobs": dict(self.blobs),
        }
        return record_json(doc)

    @staticmethod
    def decode(blob: BlobId, payload: bytes) -> Erasure:
        """Parse an ERASURE blob payload.

        Raises:
            CorruptionError: the payload is not a replacement map.
        """
        try:
            doc = json.loads(payload)
            return Erasure(
                {ChunkId(old): (ChunkId(n), BlobId(v), int(k)) for old, (n, v, k) in doc["chunks"].items()},
                {(ChunkId(c), BlobId(v)): (BlobId(n), int(k)) for c, v, n, k in doc["vectors"]},
                {BlobId(old): BlobId(new) for old, new in doc["blobs"].items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"erasure map {blob} is damaged: {exc}") from exc

    def replaced_ids(self) -> list[str]:
        """Every chunk and blob id this erasure replaced."""
        return [*self.chunks, *(v for _, v in self.vectors), *self.blobs]

    def new_ids(self) -> list[str]:
        """Every chunk and blob id this erasure wrote: replacement chunks (files or inline rows), deletion
        vectors and before-images."""
        return [*(i for new, erased, _ in self.chunks.values() for i in (new, erased)),
                *(v for v, _ in self.vectors.values()), *self.blobs.values()]


def index_erasure(txn: IndexTxn, env: Environment, blob: BlobId, erasure: Erasure) -> None:
    """Index erasure `blob` (whose map is `erasure`) inside `txn`, its erasure commit's transaction: the
    next ordinal of `erasures`, and each id it replaced in `replaced`."""
    ordinal = int(txn.stat(env.db(DB_ERASURES))["entries"])
    txn.put(struct.pack(">Q", ordinal), blob.encode(), db=env.db(DB_ERASURES))
    for name in erasure.replaced_ids():
        txn.put(name.encode(), blob.encode(), db=env.db(DB_REPLACED))


def replace_op(op: TableOp, erasures: Iterable[Erasure]) -> TableOp:
    """`op` as readers see it once `erasures` (in order) replaced the chunks and blobs it names."""
    for erasure in erasures:
        op = _replace_once(op, erasure)
    return op


def _replace_once(op: TableOp, erasure: Erasure) -> TableOp:
    chunks = erasure.chunks
    if op.before not in erasure.blobs and not any(f.chunk in chunks for f in op.add) \
            and not any(d.chunk in chunks for d in op.deletes):
        return op
    deletes: list[Deletes] = []
    for d in op.deletes:
        if d.chunk not in chunks:
            deletes.append(d)
        elif d.vector is None:
            deletes.append(Deletes(chunks[d.chunk][0], None, d.count))
        else:
            # A vector the map lacks was gone when the erasure ran: only expired versions, never read, use it.
            merged = erasure.vectors.get((d.chunk, d.vector), (d.vector, d.count))
            deletes.append(Deletes(chunks[d.chunk][0], *merged))
    redeleted = {d.chunk for d in op.deletes}
    adds = []
    for frag in op.add:
        found = chunks.get(frag.chunk)
        if found is None:
            adds.append(frag)
            continue
        adds.append(replace(frag, chunk=found[0]))
        if frag.chunk not in redeleted:
            deletes.append(Deletes(found[0], found[1], found[2]))
    before = erasure.blobs.get(op.before, op.before) if op.before is not None else None
    return replace(op, add=tuple(adds), deletes=tuple(deletes), before=before)


def replace_record(record: CommitRecord, erasures: Iterable[Erasure]) -> CommitRecord:
    """`record` with every table op replaced (see `replace_op`); the same object when nothing changes."""
    maps = tuple(erasures)
    if not maps:
        return record
    tables = {name: replace_op(op, maps) for name, op in record.tables.items()}
    if all(tables[name] is op for name, op in record.tables.items()):
        return record
    return replace(record, tables=tables)


class ErasureLog(Protocol):
    """What an `ErasureStore` reads of a lake log (a `LogStore`)."""

    env: Environment

    def get_blob(self, blob: BlobId, kind: BlobKind) -> bytes:
        """The payload of a blob stored in the log."""
        ...


class ErasureStore:
    """The erasure index of one lake's log."""

    def __init__(self, env: Environment, blobs: BlobGetter) -> None:
        self._env = env
        self._blobs = blobs

    @classmethod
    def of(cls, log: ErasureLog) -> ErasureStore:
        """The erasure index of `log` (how the layers above `udr.log` reach it)."""
        return cls(log.env, log.get_blob)

    def generation(self) -> int:
        """How many erasures the lake holds (readers cache folded snapshots per generation)."""
        with self._env.read() as txn:
            return int(txn.stat(self._env.db(DB_ERASURES))["entries"])

    def erasures(self) -> list[Erasure]:
        """Every erasure's map, oldest first."""
        with self._env.read() as txn:
            ids = [BlobId(v.decode()) for _, v in txn.cursor(db=self._env.db(DB_ERASURES))]
        return [Erasure.decode(blob, self._blobs(blob, BlobKind.ERASURE)) for blob in ids]

    def is_replaced(self, name: str) -> bool:
        """Whether an erasure replaced chunk or blob `name`."""
        with self._env.read() as txn:
            return txn.get(name.encode(), db=self._env.db(DB_REPLACED)) is not None

    def replaced(self) -> set[str]:
        """Every chunk and blob id some erasure replaced."""
        with self._env.read() as txn:
            return {key.decode() for key, _ in txn.cursor(db=self._env.db(DB_REPLACED))}

    def index_hook(self, blob: BlobId, erasure: Erasure, new_chunks: Iterable[ChunkId],
                   unchanged: Callable[[], None]) -> CommitHook:
        """A `LogStore.append` hook that indexes the erasure inside its commit's transaction, after
        `unchanged()` (which raises `ConflictError` if the table changed since the erasure read the log)."""
        fresh = tuple(new_chunks)

        def hook(txn: IndexTxn, env: Environment) -> None:
            unchanged()
            index_erasure(txn, env, blob, erasure)
            for chunk in fresh:  # committed now: kept by the map, no longer by an intent
                txn.delete(chunk.encode(), db=env.db(DB_INTENTS))

        return hook


