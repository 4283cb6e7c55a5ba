"""A lake's log as a replica of a log kept elsewhere: what a cache of a lake in object storage (`udr.remote`),
and a push or pull between lakes, read and write of the log, inside one transaction they hold.

`Replica` opens the log (by directory, or from an open `LogStore`) and hands out `ReplicaTxn`s: one transaction
each, so an applied suffix and the `meta.remote_applied` position become durable together (replaying twice is
impossible), and what a watcher collects at a write's end is exactly what that write is about to commit. A
`ReplicaWatcher` sees every watched write transaction of the log (the cache publishes through it). Nothing
outside `udr.log` sees the environment or its transactions. A `ReplicaTxn` is used only by the thread that
opened it, inside its `with` block.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from udr.errors import ConflictError, CorruptionError
from udr.log.commits import CommitRecord, commit_id, decode_commit
from udr.log.envtypes import Environment, IndexTxn, LogEnvironments
from udr.log.erasure import Erasure, index_erasure
from udr.log.format import (
    DB_BLOBS,
    DB_COMMITS,
    DB_GROUPS,
    DB_META,
    DB_REFLOG,
    DB_REFS,
    DB_SEQS,
    ERASURE_KEY,
    FORMAT_VERSION,
    LOG_DIR,
    META_REMOTE_APPLIED,
    META_REMOTE_PURGED,
    META_REMOTE_URL,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.index import open_log_env, unframe_blob
from udr.log.reflog import Reason, move_ref

_FORMAT_KEY = b"format_version"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a log stands: newest commit seq (-1: none) and number of ref-log records."""

    seq: int
    moves: int


@dataclass(frozen=True, slots=True)
class Suffix:
    """What a log holds after a position, in stored form.

    Attributes:
        commits: (id, stored commit blob) of each commit, in log order.
        blobs: stored bytes of the log blobs those commits name (those present).
        chunks: the chunk files they add.
        moves: the ref-log records (`udr.log.reflog` documents) after the position, in order.
    """

    commits: tuple[tuple[CommitId, bytes], ...]
    blobs: dict[BlobId, bytes]
    chunks: frozenset[ChunkId]
    moves: tuple[dict[str, object], ...] = ()


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


class ReplicaTxn:
    """One transaction of a replica's log (valid inside `Replica.reading`/`writing` or a watcher's call)."""

    __slots__ = ("_env", "_txn")

    def __init__(self, env: Environment, txn: IndexTxn) -> None:
        self._env = env
        self._txn = txn

    def _get(self, key: bytes, db: bytes) -> bytes | None:
        return self._txn.get(key, db=self._env.db(db))

    def position(self) -> Position:
        """Where the log stands as this transaction sees it."""
        seqs = self._txn.cursor(db=self._env.db(DB_SEQS))
        seq = int(struct.unpack(">Q", seqs.key())[0]) if seqs.last() else -1
        moves = self._txn.cursor(db=self._env.db(DB_REFLOG))
        count = int(struct.unpack(">Q", moves.key())[0]) + 1 if moves.last() else 0
        return Position(seq, count)

    def applied(self) -> int:
        """The last remote log entry applied (-1: none)."""
        raw = self._get(META_REMOTE_APPLIED, DB_META)
        return int(raw) if raw is not None else -1

    def set_applied(self, seq: int | None) -> None:
        """Record that remote entry `seq` is applied (None: forget the position, the log is no cache)."""
        if seq is None:
            self._txn.delete(META_REMOTE_APPLIED, db=self._env.db(DB_META))
        else:
            self._txn.put(META_REMOTE_APPLIED, str(seq).encode(), db=self._env.db(DB_META))

    def purged(self) -> int:
        """How many replaced ids the remote log was last purged of (0: never)."""
        raw = self._get(META_REMOTE_PURGED, DB_META)
        return int(raw) if raw is not None else 0

    def set_purged(self, count: int) -> None:
        """Record that the remote log no longer carries the first `count` replaced ids' blobs."""
        self._txn.put(META_REMOTE_PURGED, str(count).encode(), db=self._env.db(DB_META))

    def lake_format(self) -> int:
        """The format version the log records (its `meta.format_version`)."""
        raw = self._get(_FORMAT_KEY, DB_META)
        return int(raw) if raw is not None else FORMAT_VERSION

    def set_format(self, version: int) -> None:
        """Record format `version` as the log's `meta.format_version`."""
        self._txn.put(_FORMAT_KEY, str(version).encode(), db=self._env.db(DB_META))

    def remote_url(self) -> str | None:
        """The URL of the remote lake this log is a cache of, None for a local lake."""
        raw = self._get(META_REMOTE_URL, DB_META)
        return raw.decode() if raw is not None else None

    def set_remote_url(self, url: str) -> None:
        """Mark this log as the cache of the remote lake at `url`."""
        self._txn.put(META_REMOTE_URL, url.encode(), db=self._env.db(DB_META))

    def root_commit(self) -> CommitId | None:
        """The id of the log's first commit (seq 0), if any."""
        raw = self._get(struct.pack(">Q", 0), DB_SEQS)
        return CommitId(raw.decode()) if raw is not None else None

    def group_records(self) -> dict[bytes, bytes]:
        """Every consumer-group record (`udr.log.groups`, `udr.log.members`): key -> value. A lake in object
        storage publishes the ones a write changed (a few per group: they are read at each write's start)."""
        cursor = self._txn.cursor(db=self._env.db(DB_GROUPS))
        return {bytes(key): bytes(value) for key, value in cursor} if cursor.first() else {}

    def put_group_records(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Apply consumer-group record changes another log published: key -> new value (None: deleted)."""
        db = self._env.db(DB_GROUPS)
        for key, value in changes.items():
            if value is None:
                self._txn.delete(key, db=db)
            else:
                self._txn.put(key, value, db=db)

    def suffix(self, since: Position, *, until: int | None = None) -> Suffix:
        """The commits after `since.seq` (with their blobs and chunks), up to seq `until` (exclusive; None: the
        newest), and the ref moves after `since.moves`."""
        commits: list[tuple[CommitId, bytes]] = []
        blobs: dict[BlobId, bytes] = {}
        chunks: set[ChunkId] = set()
        cursor = self._txn.cursor(db=self._env.db(DB_SEQS))
        if cursor.set_range(struct.pack(">Q", since.seq + 1)):
            for raw_seq, raw_id in cursor:
                if until is not None and struct.unpack(">Q", raw_seq)[0] >= until:
                    break
                cid = CommitId(raw_id.decode())
                stored = self._get(raw_id, DB_COMMITS)
                if stored is None:
                    raise CorruptionError(f"commit {cid} is in the sequence index but not in the log")
                record = decode_commit(unframe_blob(cid, stored, expect=BlobKind.COMMIT, verify=False), cid)
                commits.append((cid, stored))
                chunks |= record_chunks(record)
                erasure = self._erasure_of(cid, record)
                # An erasure's replacement chunk files and blobs are named by its map, not by its commit's ops.
                written = erasure.new_ids() if erasure is not None else []
                for name in [*record_blobs(record), *written]:
                    raw_blob = self._get(name.encode(), DB_BLOBS)
                    if raw_blob is not None:
                        blobs[BlobId(name)] = raw_blob
                    elif name in written:
                        chunks.add(ChunkId(name))
        moves: list[dict[str, object]] = []
        reflog = self._txn.cursor(db=self._env.db(DB_REFLOG))
        if reflog.set_range(struct.pack(">Q", since.moves)):
            moves = [json.loads(raw) for _, raw in reflog]
        return Suffix(tuple(commits), blobs, frozenset(chunks), tuple(moves))

    def apply(self, what: str, commits: Sequence[tuple[CommitId, bytes]], blobs: Mapping[BlobId, bytes],
              moves: Sequence[Mapping[str, object]], version: int) -> None:
        """Apply another log's suffix (`what` names it in errors): its blobs, commits in order, ref moves, and
        its format version if newer.

        Raises:
            CorruptionError: a stored object does not hash to its id, or this log has diverged from the
                other (a commit's seq or a ref's old value does not match).
        """
        for blob, stored in blobs.items():
            if len(stored) < 3:
                raise CorruptionError(f"{what}: blob {blob} is damaged")
            unframe_blob(blob, stored, expect=BlobKind(stored[1]))
            self._txn.put(blob.encode(), stored, db=self._env.db(DB_BLOBS), overwrite=False)
        for cid, stored in commits:
            self._apply_commit(what, cid, stored)
        for move in moves:
            self._apply_move(what, move)
        if version > self.lake_format():
            self.set_format(version)

    def _apply_commit(self, what: str, cid: CommitId, stored: bytes) -> None:
        canonical = unframe_blob(cid, stored, expect=BlobKind.COMMIT, verify=False)
        if commit_id(canonical) != cid:
            raise CorruptionError(f"{what}: commit {cid} does not hash to its id")
        record = decode_commit(canonical, cid)
        expected = self.position().seq + 1
        if record.seq != expected:
            raise CorruptionError(f"{what} adds commit {cid[:10]} at seq {record.seq}, but the cache's next seq "
                                  f"is {expected}: the cache diverged; delete it and reopen")
        self._txn.put(cid.encode(), stored, db=self._env.db(DB_COMMITS))
        self._txn.put(struct.pack(">Q", record.seq), cid.encode(), db=self._env.db(DB_SEQS))
        erasure = self._erasure_of(cid, record)
        if erasure is not None:  # readers see every later read through it, as on the erasing machine
            index_erasure(self._txn, self._env, BlobId(record.metadata[ERASURE_KEY]), erasure)

    def _erasure_of(self, cid: CommitId, record: CommitRecord) -> Erasure | None:
        """The replacement map of erasure commit `record` (None for another commit)."""
        blob = record.metadata.get(ERASURE_KEY)
        if blob is None:
            return None
        raw = self._get(blob.encode(), DB_BLOBS)
        if raw is None:
            raise CorruptionError(f"erasure commit {cid[:10]} names map {blob}, which the log lacks")
        return Erasure.decode(BlobId(blob), unframe_blob(BlobId(blob), raw, expect=BlobKind.ERASURE))

    def _apply_move(self, what: str, move: Mapping[str, object]) -> None:
        why = Reason(str(move["action"]), str(move["message"]), str(move["author"]))
        old, new = move["old"], move["new"]
        try:
            move_ref(self._txn, self._env.db(DB_REFS), self._env.db(DB_REFLOG), str(move["ref"]).encode(),
                     CommitId(str(new)) if new is not None else None,
                     CommitId(str(old)) if old is not None else None, why, time_us=int(str(move["time_us"])))
        except ConflictError as exc:
            raise CorruptionError(f"{what} moves {move['ref']} from a commit the cache does not hold there "
                                  f"({exc}): the cache diverged; delete it and reopen") from exc


class ReplicaWatcher(Protocol):
    """Sees every watched write transaction of a replica's log (a lake mirrored elsewhere publishes through it).

    `begin` runs right after the transaction starts, inside the log's writer lock; `finish` runs just before it
    commits, and raising there aborts the transaction, so what it publishes and what commits locally agree.
    """

    def begin(self, txn: ReplicaTxn) -> object:
        """Note where the log stands as `txn` begins; the value comes back to `finish`."""
        ...

    def finish(self, txn: ReplicaTxn, began: object) -> None:
        """Publish what `txn` wrote since `began`, or raise to abort it."""
        ...

    def aborted(self) -> None:
        """`finish` raised and the transaction is aborted; the writer lock is free again."""
        ...


@dataclass(frozen=True, slots=True)
class _Watching:
    """A `ReplicaWatcher` as the environment's `WriteWatcher`: each transaction wrapped as a `ReplicaTxn`."""

    env: Environment
    watcher: ReplicaWatcher

    def begin(self, txn: IndexTxn) -> object:
        return self.watcher.begin(ReplicaTxn(self.env, txn))

    def finish(self, txn: IndexTxn, began: object) -> None:
        self.watcher.finish(ReplicaTxn(self.env, txn), began)

    def aborted(self) -> None:
        self.watcher.aborted()


class Replica:
    """A lake's log as a replica: `Replica.of(log)` for an open `LogStore`, `open_replica(root)` by directory."""

    def __init__(self, env: Environment) -> None:
        """The replica of the log in `env`."""
        self._env = env

    @classmethod
    def of(cls, log: LogEnvironments) -> Replica:
        """The log of an open `LogStore`."""
        return cls(log.env)

    @contextmanager
    def reading(self) -> Iterator[ReplicaTxn]:
        """A read transaction."""
        with self._env.read() as txn:
            yield ReplicaTxn(self._env, txn)

    @contextmanager
    def writing(self, *, watched: bool = True) -> Iterator[ReplicaTxn]:
        """A durable write transaction, committed on clean exit; the watcher sees it unless not `watched`."""
        with self._env.write(watched=watched) as txn:
            yield ReplicaTxn(self._env, txn)

    def watch(self, watcher: ReplicaWatcher | None) -> None:
        """Have `watcher` see every watched write transaction of this log, through any handle of this process
        (None: stop)."""
        self._env.watch(_Watching(self._env, watcher) if watcher is not None else None)



@contextmanager
def open_replica(root: Path) -> Iterator[Replica]:
    """The log of the lake directory `root` (created if missing), closed on exit.

    Raises:
        FormatError: the log's files are damaged. UdrError: they cannot be opened.
    """
    env = open_log_env(root / LOG_DIR)
    try:
        yield Replica(env)
    finally:
        env.close()
