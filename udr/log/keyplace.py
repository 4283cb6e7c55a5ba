"""Placing a keyed write over concurrent keyed writes of other keys, inside the log's write transaction.

Two upserts or deletes by key of one keyed table, made against the same base, commute when they touch disjoint
keys: each op carries the hashes of the keys it touches (`TableOp.keys`), so the log decides that from the
ops alone, reading no data. Both may still set the deletion vector of the same fragment (a big bulk-loaded
one). The later op's vector usually holds only its own positions, chained onto the fragment's vector at its
base (`TableOp.added` counts them), and the log re-points it onto the vector at the head; when it is whole
(its chain was full), the log chains a copy of each concurrent payload's own positions onto it instead. Both
are valid because the positions are disjoint (rows of disjoint keys) and every position of the vectors below
stays deleted. What the log cannot link (a chain reaching its depth limit, a lake without chained vectors)
leaves the writer to re-apply its changes (`HeadMoved`). Pure: safe from any
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
            *, own: Mapping[BlobId, bytes], chained: bool, head: CommitId
            ) -> tuple[CommitRecord, dict[BlobId, tuple[BlobKind, bytes]]]:
    """`record` (placed over the commits `between`, newest first) with each deletion vector of a keyed op that
    a commit in between also set linked with theirs (`_Links`), and the blobs to store with it (replaced
    vectors left out); `stored` reads a committed DELETES payload, `own` holds the body of the positions a
    whole staged vector adds (the writer's, not stored), `chained`: the lake has chained vectors.

    Raises:
        HeadMoved: such a vector cannot be linked; the writer re-applies its changes on `head`.
    """
    links = _Links(dict(blobs), stored, own, HeadMoved(
        f"branch {record.branch!r} moved to {head[:7]} and a keyed write since also changed the deletion vector "
        f"of a fragment this commit changes, which the log cannot link; reload and retry", head))
    tables = dict(record.tables)
    for name, op in record.tables.items():
        theirs: dict[ChunkId, list[tuple[Deletes, int | None]]] = {}
        for other in reversed(between):  # oldest first
            if name in other.tables:
                for d, added in _with_added(other.tables[name]):
                    theirs.setdefault(d.chunk, []).append((d, added))
        if op.keys is None or not theirs.keys() & {d.chunk for d in op.deletes}:
            continue
        if not chained or len(op.added) != len(op.deletes):
            raise links.refused
        linked = [(d, added) if d.chunk not in theirs else links.link(d, added, theirs[d.chunk])
                  for d, added in zip(op.deletes, op.added)]
        tables[name] = replace(op, deletes=tuple(d for d, _ in linked), added=tuple(n for _, n in linked))
    return replace(record, tables=tables), links.blobs


def _with_added(op: TableOp) -> list[tuple[Deletes, int | None]]:
    added = op.added if op.keys is not None and len(op.added) == len(op.deletes) else (None,) * len(op.deletes)
    return list(zip(op.deletes, added))


class _Links:
    """Links one commit's deletion vectors with those of the commits placed since its base, storing the new
    payloads in `blobs`."""

    def __init__(self, blobs: dict[BlobId, tuple[BlobKind, bytes]], stored: Callable[[BlobId], bytes],
                 own: Mapping[BlobId, bytes], refused: HeadMoved) -> None:
        self.blobs, self.stored, self.own, self.refused = blobs, stored, own, refused

    def link(self, mine: Deletes, added: int | None, theirs: list[tuple[Deletes, int | None]]
             ) -> tuple[Deletes, int | None]:
        """`mine` (a vector adding `added` positions to its fragment's at its base) on top of `theirs` (the same
        fragment's vectors set since, oldest first), and what it adds to the last of them (None: unknown).

        A whole payload (the base's positions and its own: the writer resets a long chain) becomes the base of
        a copy of each of their payloads' own positions, oldest first, when each is one. Otherwise the payload
        of its own positions (chained onto the base's vector, whole where there was none, or given in `own`)
        is re-pointed onto the newest of theirs."""
        newest = theirs[-1][0]
        if added is None or mine.vector is None or newest.vector is None or mine.vector not in self.blobs:
            raise self.refused
        payload = self.blobs[mine.vector][1]
        whole = not _chained(payload) and mine.count != added
        if whole and (stacks := self._stackable(mine.count - added, theirs)):
            vector = mine.vector
            for depth, copied in enumerate(stacks, 1):
                vector = self._store(vector, depth, copied)
            return Deletes(mine.chunk, vector, newest.count + added), None
        body = self.own.get(mine.vector) if whole else payload[_HEADER:] if _chained(payload) else payload
        if body is None:
            raise self.refused
        del self.blobs[mine.vector]
        vector = self._store(newest.vector, _depth(self.stored(newest.vector)) + 1, body)
        return Deletes(mine.chunk, vector, newest.count + added), added

    def _stackable(self, below: int, theirs: list[tuple[Deletes, int | None]]) -> list[bytes]:
        """The bodies of `theirs`' payloads, oldest first, when each holds exactly its own positions over the
        one before (the first over a vector of `below` positions) and they fit in a chain; else []."""
        bodies: list[bytes] = []
        previous: BlobId | None = None
        for d, added in theirs:
            payload = self.stored(d.vector) if d.vector is not None else b""
            if (added is None or not _chained(payload) or d.count - added != below
                    or (previous is not None and _base(payload) != previous)):
                return []
            bodies.append(payload[_HEADER:])
            below, previous = d.count, d.vector
        return bodies if len(bodies) < MAX_VECTOR_CHAIN else []

    def _store(self, base: BlobId, depth: int, body: bytes) -> BlobId:
        if depth >= MAX_VECTOR_CHAIN:
            raise self.refused
        linked = VECTOR_CHAIN_MAGIC + bytes.fromhex(base) + bytes([depth]) + body
        vector = BlobId(content_id(linked))
        self.blobs[vector] = (BlobKind.DELETES, linked)
        return vector


def _chained(payload: bytes) -> bool:
    return payload[:len(VECTOR_CHAIN_MAGIC)] == VECTOR_CHAIN_MAGIC and len(payload) >= _HEADER


def _base(payload: bytes) -> BlobId:
    return BlobId(payload[len(VECTOR_CHAIN_MAGIC):_HEADER - 1].hex())


def _depth(payload: bytes) -> int:
    """How many payloads lie below this one (0: a whole vector)."""
    return payload[_HEADER - 1] if _chained(payload) else 0
