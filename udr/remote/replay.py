"""Between a local cache's LMDB log and remote log entries: what a write transaction published, and applying
an entry another writer published.

Both work inside a write transaction of the cache's log environment that the caller holds, so an applied entry
and the cache's `remote_applied` position become durable together (replaying twice is impossible), and what
`collect` reads is exactly what that transaction is about to commit. Pure functions of the transaction:
safe from any thread that owns it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from udr.errors import ConflictError, CorruptionError
from udr.log.commits import CommitRecord, commit_id, decode_commit
from udr.log.erasure import Erasure, index_erasure
from udr.log.format import (
    DB_BLOBS,
    DB_COMMITS,
    DB_META,
    DB_REFLOG,
    DB_REFS,
    DB_SEQS,
    ERASURE_KEY,
    FORMAT_VERSION,
    META_REMOTE_APPLIED,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.index import Environment, IndexTxn, unframe_blob
from udr.log.reflog import Reason, move_ref
from udr.remote.log import Entry


@dataclass(frozen=True, slots=True)
class Position:
    """Where a cache's log stands: newest commit seq (-1: none) and number of ref-log records."""

    seq: int
    moves: int


def position(env: Environment, txn: IndexTxn) -> Position:
    """The position of the cache's log as `txn` sees it."""
    seqs = txn.cursor(db=env.db(DB_SEQS))
    seq = int(struct.unpack(">Q", seqs.key())[0]) if seqs.last() else -1
    moves = txn.cursor(db=env.db(DB_REFLOG))
    count = int(struct.unpack(">Q", moves.key())[0]) + 1 if moves.last() else 0
    return Position(seq, count)


def applied(env: Environment, txn: IndexTxn) -> int:
    """The last remote log entry the cache applied (-1: none)."""
    raw = txn.get(META_REMOTE_APPLIED, db=env.db(DB_META))
    return int(raw) if raw is not None else -1


def set_applied(env: Environment, txn: IndexTxn, seq: int) -> None:
    """Record inside `txn` that remote entry `seq` is applied."""
    txn.put(META_REMOTE_APPLIED, str(seq).encode(), db=env.db(DB_META))


def lake_format(env: Environment, txn: IndexTxn) -> int:
    """The format version the cache's log records (its `meta.format_version`)."""
    raw = txn.get(b"format_version", db=env.db(DB_META))
    return int(raw) if raw is not None else FORMAT_VERSION


def record_blobs(record: CommitRecord) -> set[BlobId]:
    """Every log blob `record` names: schemas, inline rows, deletion vectors, before-images, erasure maps."""
    out: set[BlobId] = set()
    for op in record.tables.values():
        out.update(b for b in (op.schema, op.before) if b is not None)
        for frag in op.add:
            out.add(frag.schema)
            if frag.inline:
                out.add(BlobId(frag.chunk))
        out.update(d.vector for d in op.deletes if d.vector is not None)
    erasure = record.metadata.get(ERASURE_KEY)
    if erasure is not None:
        out.add(BlobId(erasure))
    return out


def record_chunks(record: CommitRecord) -> set[ChunkId]:
    """The chunk files `record` adds."""
    return {f.chunk for op in record.tables.values() for f in op.add if not f.inline}


def commits_after(env: Environment, txn: IndexTxn, seq: int) -> tuple[list[tuple[CommitId, bytes]],
                                                                      dict[BlobId, bytes], set[ChunkId]]:
    """The stored commits after commit seq `seq` in log order, the blobs they name and the chunks they add."""
    commits: list[tuple[CommitId, bytes]] = []
    blobs: dict[BlobId, bytes] = {}
    chunks: set[ChunkId] = set()
    cursor = txn.cursor(db=env.db(DB_SEQS))
    if cursor.set_range(struct.pack(">Q", seq + 1)):
        for _, raw_id in cursor:
            cid = CommitId(raw_id.decode())
            stored = txn.get(raw_id, db=env.db(DB_COMMITS))
            if stored is None:
                raise CorruptionError(f"commit {cid} is in the sequence index but not in the log")
            record = decode_commit(unframe_blob(cid, stored, expect=BlobKind.COMMIT, verify=False), cid)
            commits.append((cid, stored))
            chunks |= record_chunks(record)
            erasure = _erasure_of(env, txn, cid, record)
            # An erasure's replacement chunk files and blobs are named by its map, not by its commit's ops.
            written = erasure.new_ids() if erasure is not None else []
            for name in [*record_blobs(record), *written]:
                raw_blob = txn.get(name.encode(), db=env.db(DB_BLOBS))
                if raw_blob is not None:
                    blobs[BlobId(name)] = raw_blob
                elif name in written:
                    chunks.add(ChunkId(name))
    return commits, blobs, chunks


def _erasure_of(env: Environment, txn: IndexTxn, cid: CommitId, record: CommitRecord) -> Erasure | None:
    """The replacement map of erasure commit `record` (None for another commit), read inside `txn`."""
    blob = record.metadata.get(ERASURE_KEY)
    if blob is None:
        return None
    raw = txn.get(blob.encode(), db=env.db(DB_BLOBS))
    if raw is None:
        raise CorruptionError(f"erasure commit {cid[:10]} names map {blob}, which the log lacks")
    return Erasure.decode(BlobId(blob), unframe_blob(BlobId(blob), raw, expect=BlobKind.ERASURE))


def collect(env: Environment, txn: IndexTxn, since: Position, seq: int) -> tuple[Entry, set[ChunkId]] | None:
    """The entry (at remote position `seq`) publishing what `txn` wrote after `since`, and the chunks it needs
    uploaded first; None if it added no commit and moved no ref."""
    commits, blobs, chunks = commits_after(env, txn, since.seq)
    moves: list[dict[str, object]] = []
    reflog = txn.cursor(db=env.db(DB_REFLOG))
    if reflog.set_range(struct.pack(">Q", since.moves)):
        moves = [json.loads(raw) for _, raw in reflog]
    if not commits and not moves:
        return None
    return Entry(seq, lake_format(env, txn), tuple(commits), blobs, tuple(moves)), chunks


def apply(env: Environment, txn: IndexTxn, entry: Entry, *, track: bool = True) -> None:
    """Apply remote `entry` to the cache inside `txn`: its blobs, commits and ref moves, and (if `track`: a
    cache, not a lake receiving a push or pull) the position.

    Raises:
        CorruptionError: a stored object does not hash to its id, or the cache has diverged from the remote
            log (delete the cache directory; it is rebuilt from the remote lake).
    """
    for blob, stored in entry.blobs.items():
        if len(stored) < 3:
            raise CorruptionError(f"remote log entry {entry.seq}: blob {blob} is damaged")
        unframe_blob(blob, stored, expect=BlobKind(stored[1]))
        txn.put(blob.encode(), stored, db=env.db(DB_BLOBS), overwrite=False)
    for cid, stored in entry.commits:
        canonical = unframe_blob(cid, stored, expect=BlobKind.COMMIT, verify=False)
        if commit_id(canonical) != cid:
            raise CorruptionError(f"remote log entry {entry.seq}: commit {cid} does not hash to its id")
        record = decode_commit(canonical, cid)
        expected = position(env, txn).seq + 1
        if record.seq != expected:
            raise CorruptionError(f"remote log entry {entry.seq} adds commit {cid[:10]} at seq {record.seq}, but "
                                  f"the cache's next seq is {expected}: the cache diverged; delete it and reopen")
        txn.put(cid.encode(), stored, db=env.db(DB_COMMITS))
        txn.put(struct.pack(">Q", record.seq), cid.encode(), db=env.db(DB_SEQS))
        erasure = _erasure_of(env, txn, cid, record)
        if erasure is not None:  # readers see every later read through it, as on the erasing machine
            index_erasure(txn, env, BlobId(record.metadata[ERASURE_KEY]), erasure)
    for move in entry.moves:
        why = Reason(str(move["action"]), str(move["message"]), str(move["author"]))
        old, new = move["old"], move["new"]
        try:
            move_ref(txn, env.db(DB_REFS), env.db(DB_REFLOG), str(move["ref"]).encode(),
                     CommitId(str(new)) if new is not None else None,
                     CommitId(str(old)) if old is not None else None, why, time_us=int(str(move["time_us"])))
        except ConflictError as exc:
            raise CorruptionError(f"remote log entry {entry.seq} moves {move['ref']} from a commit the cache does "
                                  f"not hold there ({exc}): the cache diverged; delete it and reopen") from exc
    if entry.format > lake_format(env, txn):
        txn.put(b"format_version", str(entry.format).encode(), db=env.db(DB_META))
    if track:
        set_applied(env, txn, entry.seq)
