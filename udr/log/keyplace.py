"""Placing a keyed write over concurrent keyed writes of other keys, inside the log's write transaction.

Two upserts or deletes by key of one keyed table, made against the same base, commute when they touch disjoint
keys: each op carries the hashes of the keys it touches (`TableOp.keys`), so the log decides that from the
ops alone, reading no data. Both may still set the deletion vector of the same fragment (a big bulk-loaded
one); the later op's vector then holds only its own positions, chained onto the fragment's vector at its base
(`TableOp.added` counts them). The log re-points that chain link onto the vector the fragment has at the new
head, which is valid because the positions are disjoint (they are rows of disjoint keys) and every position of
the head's vector stays deleted. A link the log cannot re-point (a whole payload, a chain at its depth limit,
a lake without chained vectors) leaves the writer to re-apply its changes (`HeadMoved`). Pure: safe from any
thread; the caller stores the new vectors in the same transaction as the record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from udr.log.commits import CommitRecord, Deletes, TableOp
from udr.log.format import (
    MAX_VECTOR_CHAIN,
    VECTOR_CHAIN_MAGIC,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.hashing import content_id
from udr.log.races import HeadMoved

# A chained vector's header: the magic, the base's blob id (32 raw bytes), the depth (1 byte).
_HEADER = len(VECTOR_CHAIN_MAGIC) + 32 + 1

Blobs = Mapping[BlobId, tuple[BlobKind, bytes]]


def keyed_commute(mine: TableOp, theirs: TableOp) -> bool:
    """Whether two ops of one keyed table, each made against the same base, commute: both are keyed writes
    that carry their keys' hashes, neither reshapes or rewrites the table, they add no chunk in common and
    their keys are disjoint (shared deletion vectors are re-pointed by `repoint`)."""
    if mine.keys is None or theirs.keys is None or mine.reshapes or theirs.reshapes or mine.rewrite or theirs.rewrite:
        return False
    if {f.chunk for f in mine.add} & {f.chunk for f in theirs.add}:
        return False
    return not set(mine.keys).intersection(theirs.keys)


def repoint(record: CommitRecord, between: Sequence[CommitRecord], blobs: Blobs, stored: Callable[[BlobId], bytes],
            *, chained: bool, head: CommitId) -> tuple[CommitRecord, dict[BlobId, tuple[BlobKind, bytes]]]:
    """`record` (placed over the commits `between`, newest first) with each deletion vector of a keyed op that
    a commit in between also set re-pointed onto that commit's vector, and the blobs to store with it (the
    replaced vectors left out); `stored` reads a committed DELETES payload, `chained`: the lake has chained
    vectors.

    Raises:
        HeadMoved: such a vector cannot be re-pointed; the writer re-applies its changes on `head`.
    """
    out = dict(blobs)
    tables = dict(record.tables)
    for name, op in record.tables.items():
        latest: dict[ChunkId, Deletes] = {}
        for other in between:
            for d in other.tables[name].deletes if name in other.tables else ():
                latest.setdefault(d.chunk, d)
        if op.keys is None or not latest.keys() & {d.chunk for d in op.deletes}:
            continue
        if not chained or len(op.added) != len(op.deletes):
            raise _moved(record, name, head)
        deletes = [d if d.chunk not in latest else _repointed(d, added, latest[d.chunk], out, stored, record, name, head)
                   for d, added in zip(op.deletes, op.added)]
        tables[name] = replace(op, deletes=tuple(deletes))
    return replace(record, tables=tables), out


def _repointed(mine: Deletes, added: int | None, theirs: Deletes, blobs: dict[BlobId, tuple[BlobKind, bytes]],
               stored: Callable[[BlobId], bytes], record: CommitRecord, table: str, head: CommitId) -> Deletes:
    """`mine` chained onto `theirs` (the fragment's vector at the head): a new payload in `blobs`, `mine`'s gone."""
    if added is None or mine.vector is None or theirs.vector is None or mine.vector not in blobs:
        raise _moved(record, table, head)
    payload = blobs[mine.vector][1]
    body = payload[_HEADER:] if payload[:len(VECTOR_CHAIN_MAGIC)] == VECTOR_CHAIN_MAGIC else payload
    base = stored(theirs.vector)
    depth = base[_HEADER - 1] + 1 if base[:len(VECTOR_CHAIN_MAGIC)] == VECTOR_CHAIN_MAGIC else 1
    if depth >= MAX_VECTOR_CHAIN:
        raise _moved(record, table, head)
    linked = VECTOR_CHAIN_MAGIC + bytes.fromhex(theirs.vector) + bytes([depth]) + body
    vector = BlobId(content_id(linked))
    del blobs[mine.vector]
    blobs[vector] = (BlobKind.DELETES, linked)
    return Deletes(mine.chunk, vector, theirs.count + added)


def _moved(record: CommitRecord, table: str, head: CommitId) -> HeadMoved:
    return HeadMoved(f"branch {record.branch!r} moved to {head[:7]} and a keyed write since also changed the deletion "
                     f"vector of a fragment of {table!r} this commit changes; reload and retry", head)
