"""Placing a keyed write over concurrent keyed writes of other keys, inside the log's write transaction.

Two upserts or deletes by key of one keyed table, made against the same base, commute when they touch disjoint
keys: each op carries the hashes of the keys it touches (`TableOp.keys`), so the log decides that from the
ops alone, reading no data. Both may still set the deletion vector of the same fragment (a big bulk-loaded
one). The later op's vector then holds only its own positions (chained onto the fragment's vector at its
base, `TableOp.added` counts them; or, for a whole vector, handed to the log beside it), and the log
re-points them onto the fragment's vector at the head: valid because the positions are disjoint (rows of
disjoint keys) and every position of the head's vector stays deleted. A link that would lie `FOLD_DEPTH`
deep instead holds the positions of the chain's small top links too, chained onto the link below them.
Either way the new link is the only new blob and its base is committed, so each stored vector is named by its
commit (as a remote log's entries need). What the log cannot link (a full chain it cannot fold, a lake
without chained vectors) leaves the writer to re-apply its changes (`HeadMoved`). Pure: safe from any thread;
the caller stores the new vectors in the same transaction as the record.
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
from udr.log.gapbodies import merged_gaps
from udr.log.hashing import content_id
from udr.log.races import HeadMoved

# A chained vector's header: the magic, the base's blob id (32 raw bytes), the depth (1 byte).
_HEADER = len(VECTOR_CHAIN_MAGIC) + 32 + 1
# A re-pointed link this deep folds the chain's top links into one instead, while their bodies are small gaps
# bodies of at most `FOLD_BYTES` together (merged in plain Python inside the write transaction): writers racing on
# one fragment add a link each, and a full chain (`MAX_VECTOR_CHAIN`) refuses them.
FOLD_DEPTH = 8
FOLD_BYTES = 2048

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
    a commit in between also set re-pointed onto the head's (`_Links`), and the blobs to store with it (replaced
    vectors that no fragment names any more left out); `stored` reads a committed DELETES payload, `own` holds
    the body of the positions a whole staged vector adds (the writer's, not stored), `chained`: the lake has
    chained vectors.

    Raises:
        HeadMoved: such a vector cannot be linked; the writer re-applies its changes on `head`.
    """
    links = _Links(dict(blobs), stored, own, HeadMoved(
        f"branch {record.branch!r} moved to {head[:7]} and a keyed write since also changed the deletion vector "
        f"of a fragment this commit changes, which the log cannot link; reload and retry", head))
    tables = dict(record.tables)
    for name, op in record.tables.items():
        if op.keys is None or not op.deletes:  # no vector of a keyed write to re-point (an append's, a flush's)
            continue
        latest: dict[ChunkId, Deletes] = {}
        for other in between:  # newest first: the first vector found is the head's
            for d in other.tables[name].deletes if name in other.tables else ():
                latest.setdefault(d.chunk, d)
        if not latest.keys() & {d.chunk for d in op.deletes}:
            continue
        if not chained or len(op.added) != len(op.deletes):
            raise links.refused
        tables[name] = replace(op, deletes=tuple(d if d.chunk not in latest else links.link(d, added, latest[d.chunk])
                                                 for d, added in zip(op.deletes, op.added)))
    # A replaced payload may still be another fragment's vector: payloads are content-addressed, and fragments
    # whose rows at the same positions went share one.
    dropped = links.replaced - {d.vector for op in tables.values() for d in op.deletes}
    return replace(record, tables=tables), {v: b for v, b in links.blobs.items() if v not in dropped}


class _Links:
    """Re-points one commit's deletion vectors onto those of the commits placed since its base, storing the new
    payloads in `blobs` and noting the vectors they replace in `replaced`."""

    def __init__(self, blobs: dict[BlobId, tuple[BlobKind, bytes]], stored: Callable[[BlobId], bytes],
                 own: Mapping[BlobId, bytes], refused: HeadMoved) -> None:
        self.blobs, self.stored, self.own, self.refused = blobs, stored, own, refused
        self.replaced: set[BlobId] = set()

    def link(self, mine: Deletes, added: int | None, newest: Deletes) -> Deletes:
        """`mine` (a vector adding `added` positions to its fragment's at its base) re-pointed onto `newest` (the
        fragment's vector at the head).

        The re-pointed payload holds its own positions: a chained payload's body, a whole payload's when the
        fragment had no vector at the base (`added` is its count), else the body the writer gave in `own` (a
        whole payload resets a long chain when the log takes it as it is, over no concurrent change)."""
        if added is None or mine.vector is None or newest.vector is None or mine.vector not in self.blobs:
            raise self.refused
        payload = self.blobs[mine.vector][1]
        self.replaced.add(mine.vector)
        body = payload[_HEADER:] if _chained(payload) else payload if mine.count == added else self.own.get(mine.vector)
        if body is None:
            raise self.refused
        depth = _depth(self.stored(newest.vector)) + 1
        folded = self._folded(newest.vector, depth - 1, body) if depth >= FOLD_DEPTH else None
        vector = self._store(*folded) if folded is not None else self._store(newest.vector, depth, body)
        return Deletes(mine.chunk, vector, newest.count + added)

    def _folded(self, head: BlobId, depth: int, body: bytes) -> tuple[BlobId, int, bytes] | None:
        """The base, depth and body of one link holding `body`'s positions and those of the top links of `head`'s
        chain (`depth` deep) while their bodies are small gaps bodies of `FOLD_BYTES` together; None: none is."""
        bodies = [body]
        size = len(body)
        payload = self.stored(head)
        while _chained(payload) and size + len(payload) - _HEADER <= FOLD_BYTES:
            bodies.append(payload[_HEADER:])
            size += len(payload) - _HEADER
            head, depth = BlobId(payload[len(VECTOR_CHAIN_MAGIC):_HEADER - 1].hex()), depth - 1
            payload = self.stored(head)
        merged = merged_gaps(bodies) if len(bodies) > 1 else None
        return None if merged is None else (head, depth + 1, merged)

    def _store(self, base: BlobId, depth: int, body: bytes) -> BlobId:
        if depth >= MAX_VECTOR_CHAIN:
            raise self.refused
        linked = VECTOR_CHAIN_MAGIC + bytes.fromhex(base) + bytes([depth]) + body
        vector = BlobId(content_id(linked))
        self.blobs[vector] = (BlobKind.DELETES, linked)
        return vector


def _chained(payload: bytes) -> bool:
    return payload[:len(VECTOR_CHAIN_MAGIC)] == VECTOR_CHAIN_MAGIC and len(payload) >= _HEADER


def _depth(payload: bytes) -> int:
    """How many payloads lie below this one (0: a whole vector)."""
    return payload[_HEADER - 1] if _chained(payload) else 0
