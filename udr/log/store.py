"""The transaction log of one lake: commits, refs, blobs and chunk intents in LMDB, chunks in files.

Invariants:
- A commit becomes visible only in `LogStore.append`'s single LMDB write transaction, which stores its
  inline blobs, its record, its sequence number and moves the branch head by compare-and-swap. A crash
  at any instant leaves all of that or none of it.
- Every data chunk file is registered as an *intent* (owner pid) before it is written, and the intent
  is cleared by the commit that references it; `collect_garbage` only removes files that no commit
  references and that no live process intends to commit.
- Every move of a ref is recorded in the ref log (`udr.log.reflog`) inside the transaction that moves it.
- Bytes read back are verified against their ids; damage raises `CorruptionError`.
Safe across threads and processes (LMDB serializes writers; readers see a consistent snapshot).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from udr.errors import (
    ConflictError,
    CorruptionError,
    FormatError,
    LakeNotFound,
    RefNotFound,
    close_matches,
)
from udr.log import garbage
from udr.log.chunks import FileChunkStore
from udr.log.commits import CommitRecord, commit_id, decode_commit, encode_commit
from udr.log.envtypes import CommitHook, Environment, IndexTxn
from udr.log.format import (
    CACHE_DIR,
    CHAINED_VECTORS_VERSION,
    COLUMN_IDS_VERSION,
    DB_BLOBS,
    DB_COMMITS,
    DB_INTENTS,
    DB_META,
    DB_REFLOG,
    DB_REFS,
    DB_REPLACED,
    DB_SEQS,
    FORMAT_VERSION,
    LOG_DIR,
    READABLE_VERSIONS,
    REF_BRANCH,
    REF_TAG,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.groupcommit import Append, GroupCommit, Stored
from udr.log.index import frame_blob, framed, open_cache_env, open_log_env, unframe_blob
from udr.log.keyplace import repoint
from udr.log.label import read_format, remove_stale_labels, write_label
from udr.log.placement import placed_over
from udr.log.protocols import GcKeep
from udr.log.reflog import Move, Reason, move_ref, read_moves
from udr.log.refs import branch_key
from udr.log.turns import Turns


def _seq_key(seq: int) -> bytes:
    return struct.pack(">Q", seq)


_RECORDS_KEPT = 4096


def _framed_blob(blob: BlobId, kind: BlobKind, payload: bytes) -> bytes:
    framed_id, stored = frame_blob(kind, payload)
    if framed_id != blob:
        raise CorruptionError(f"blob {blob} was staged with bytes that hash to {framed_id}")
    return stored


@dataclass(frozen=True, slots=True)
class _Checked:
    """An append placed on its branch's head and checked: its record, that head and its blobs to put."""

    record: CommitRecord
    head: CommitId
    puts: list[tuple[bytes, bytes]]


def _open_cache(path: Path) -> Environment:
    """Open the derived-state cache, starting it afresh if it is damaged (it is never fsynced)."""
    try:
        return open_cache_env(path)
    except FormatError:
        for name in ("data.mdb", "lock.mdb"):
            (path / name).unlink(missing_ok=True)
        return open_cache_env(path)


class LogStore:
    """The log of one lake directory: append commits, read them back, move refs."""

    def __init__(self, root: Path, *, create: bool = True, durable: bool = True,
                 envs: tuple[Environment, Environment] | None = None) -> None:
        """Open the lake at `root`, creating an empty one if missing or empty (and `create`); fsync unless not
        `durable`.

        `envs` (log, cache) replace the LMDB environments under `root` (`udr.log.memory.MemoryLogStore`).

        Raises:
            LakeNotFound: no lake at `root` and `create` is False.
            FormatError: `root` is not a lake or was written by a newer udr.
        """
        self.root = root
        # Read the version before taking any lock or writing a byte: a newer lake stays untouched.
        version = read_format(root)
        if version is None and not create:
            raise LakeNotFound(f"no lake at {root}; run `udr init {root}`")
        self.version = version if version is not None else FORMAT_VERSION
        root.mkdir(parents=True, exist_ok=True)
        self.env: Environment = envs[0] if envs else open_log_env(root / LOG_DIR, durable=durable)
        try:
            if version is not None:
                self.version = self._checked_meta_version(version)
            self.cache: Environment = envs[1] if envs else _open_cache(root / CACHE_DIR)
            self.chunks = FileChunkStore(root)
            self.turns = Turns(root / LOG_DIR, self.env)
            self._group = GroupCommit(self._committed)
            # Decoded records by id: a record is immutable and verified against its id when first read.
            self._records: dict[CommitId, CommitRecord] = {}
            if version is None:
                self._initialize()
        except BaseException:
            self.env.close()
            raise

    def _checked_meta_version(self, labelled: int) -> int:
        """The lake's version: the log's own `meta.format_version` may be ahead of FORMAT (a relabel that
        crashed between the two writes), never beyond what this udr reads."""
        with self.env.read() as txn:
            raw = txn.get(b"format_version", db=self.env.db(DB_META))
        if raw is None:
            return labelled
        try:
            stored = int(raw)
        except ValueError as exc:
            raise CorruptionError(f"lake {self.root}: the log's format version {raw!r} is not a number") from exc
        if stored not in READABLE_VERSIONS:
            raise FormatError(f"lake {self.root}: its log is format version {stored}; this udr reads version "
                              f"{max(READABLE_VERSIONS)} and older: upgrade udr")
        return max(stored, labelled)

    def _initialize(self) -> None:
        root_record = CommitRecord(
            parents=(), seq=0, branch="main", time_us=time.time_ns() // 1000, author="udr", message="create lake"
        )
        with self.env.write() as txn:
            if txn.get(branch_key("main"), db=self.env.db(DB_REFS)) is None:
                self._store_commit(txn, root_record, "main", None, Reason("create", "create lake", "udr"))
                txn.put(b"format_version", str(FORMAT_VERSION).encode(), db=self.env.db(DB_META))
        # The FORMAT file is written last and atomically: its presence means the lake is complete.
        write_label(self.root)
        remove_stale_labels(self.root)

    def upgrade_format(self, version: int = COLUMN_IDS_VERSION) -> None:
        """Label an older lake with format `version`, before writing data only that version describes.

        Called before the commit point of such a commit, so no older reader ever sees that data under the
        old label; a lake labelled newer but holding only old data reads the same.
        """
        if self.version >= version:
            return
        with self.env.write() as txn:
            txn.put(b"format_version", str(version).encode(), db=self.env.db(DB_META))
        write_label(self.root, version)
        self.version = version

    def close(self) -> None:
        """Release the LMDB environments and the writer turns' descriptors."""
        self.env.close()
        self.cache.close()
        self.turns.close()

    # -- reading -------------------------------------------------------------------------------------

    def get_commit(self, cid: CommitId, txn: IndexTxn | None = None, *, cached: bool = True) -> CommitRecord:
        """Return the record of commit `cid`, verified against its id (`cached=False`: read and verify the
        stored bytes again even if this process already decoded them).

        Raises:
            RefNotFound: no such commit.
            CorruptionError: the stored bytes do not hash to `cid`.
        """
        if cached:
            found = self._records.get(cid)
            if found is not None:
                return found
        if txn is None:
            with self.env.read() as own:
                stored = own.get(cid.encode(), db=self.env.db(DB_COMMITS))
        else:
            stored = txn.get(cid.encode(), db=self.env.db(DB_COMMITS))
        if stored is None:
            raise RefNotFound(f"commit {cid} is not in the log")
        canonical = unframe_blob(cid, stored, expect=BlobKind.COMMIT, verify=False)
        if commit_id(canonical) != cid:
            raise CorruptionError(f"commit {cid} does not hash to its id: the log is damaged")
        record = decode_commit(canonical, cid)
        self._remember(cid, record)
        return record

    def _remember(self, cid: CommitId, record: CommitRecord) -> None:
        records = self._records
        if len(records) >= _RECORDS_KEPT:
            # Another thread may evict or insert at the same moment: the bound holds loosely.
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del records[next(iter(records))]
        records[cid] = record

    def head(self, branch: str, txn: IndexTxn | None = None) -> CommitId | None:
        """The head commit of `branch`, or None if there is no such branch."""
        if txn is None:
            with self.env.read() as own:
                raw = own.get(branch_key(branch), db=self.env.db(DB_REFS))
        else:
            raw = txn.get(branch_key(branch), db=self.env.db(DB_REFS))
        return CommitId(raw.decode()) if raw is not None else None

    def refs(self, prefix: bytes) -> dict[str, CommitId]:
        """All refs of one kind (`REF_BRANCH` or `REF_TAG`): name -> commit id."""
        out: dict[str, CommitId] = {}
        with self.env.read() as txn:
            cursor = txn.cursor(db=self.env.db(DB_REFS))
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    out[key[len(prefix) :].decode()] = CommitId(value.decode())
        return out

    def branches(self) -> dict[str, CommitId]:
        """Every branch: name -> head commit id."""
        return self.refs(REF_BRANCH)

    def tags(self) -> dict[str, CommitId]:
        """Every tag: name -> commit id."""
        return self.refs(REF_TAG)

    def ref_moves(self, *, newest_first: bool = True) -> list[Move]:
        """Every move of a ref recorded in the ref log (`udr.log.reflog`), newest first unless told."""
        with self.env.read() as txn:
            return read_moves(txn, self.env.db(DB_REFLOG), newest_first=newest_first)

    def find_commits(self, prefix: str) -> list[CommitId]:
        """Ids of the commits whose hex id starts with `prefix` (at most two, enough to spot ambiguity)."""
        found: list[CommitId] = []
        with self.env.read() as txn:
            cursor = txn.cursor(db=self.env.db(DB_COMMITS))
            if cursor.set_range(prefix.encode()):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(prefix.encode()) or len(found) == 2:
                        break
                    found.append(CommitId(key.decode()))
        return found

    def last_seq(self) -> int:
        """The sequence number of the newest commit in the log."""
        with self.env.read() as txn:
            cursor = txn.cursor(db=self.env.db(DB_SEQS))
            if not cursor.last():
                raise CorruptionError("the log has no commits: the lake is damaged")
            return int(struct.unpack(">Q", cursor.key())[0])

    def commits_from(self, seq: int) -> Iterator[tuple[int, CommitId]]:
        """(seq, id) of every commit with sequence number >= `seq`, in log order."""
        entries: list[tuple[int, CommitId]] = []
        with self.env.read() as txn:
            cursor = txn.cursor(db=self.env.db(DB_SEQS))
            if cursor.set_range(_seq_key(seq)):
                entries = [(int(struct.unpack(">Q", k)[0]), CommitId(v.decode())) for k, v in cursor]
        yield from entries

    def commit_at_seq(self, seq: int) -> CommitId | None:
        """The id of the commit at log position `seq`."""
        with self.env.read() as txn:
            raw = txn.get(_seq_key(seq), db=self.env.db(DB_SEQS))
        return CommitId(raw.decode()) if raw is not None else None

    def get_blob(self, blob: BlobId, kind: BlobKind) -> bytes:
        """Return the payload of a blob stored in the log.

        Raises:
            CorruptionError: missing, or does not hash to its id.
        """
        with self.env.read() as txn:
            return self._stored_blob(txn, blob, kind)

    def _stored_blob(self, txn: IndexTxn, blob: BlobId, kind: BlobKind) -> bytes:
        stored = txn.get(blob.encode(), db=self.env.db(DB_BLOBS))
        if stored is None:
            raise CorruptionError(f"blob {blob} ({kind.name.lower()}) is missing from the log")
        return unframe_blob(blob, stored, expect=kind)

    def has_blob(self, blob: BlobId) -> bool:
        """Whether blob `blob` is stored in the log."""
        with self.env.read() as txn:
            return txn.get(blob.encode(), db=self.env.db(DB_BLOBS)) is not None

    def blob_size(self, blob: BlobId) -> int:
        """Stored size of a log blob, 0 when missing."""
        with self.env.read() as txn:
            stored = txn.get(blob.encode(), db=self.env.db(DB_BLOBS))
        return len(stored) if stored is not None else 0

    # -- writing -------------------------------------------------------------------------------------

    def put_blobs_now(self, blobs: Mapping[BlobId, tuple[BlobKind, bytes]]) -> None:
        """Store blobs in their own durable write (for blobs needed before a commit, e.g. schemas)."""
        framed = self._framed(blobs)
        with self.env.write() as txn:
            self._put_blobs(txn, self._to_store(txn, blobs, framed))

    def _framed(self, blobs: Mapping[BlobId, tuple[BlobKind, bytes]]) -> dict[BlobId, bytes]:
        """The stored form of the blobs not yet in the log: compressed and hashed before the write lock
        is taken, so the lock is held (and a commit's time runs) only for the writes."""
        db = self.env.db(DB_BLOBS)
        with self.env.read() as txn:
            missing = [blob for blob in blobs if txn.get(blob.encode(), db=db) is None]
        return {blob: _framed_blob(blob, *blobs[blob]) for blob in missing}

    def _to_store(self, txn: IndexTxn, blobs: Mapping[BlobId, tuple[BlobKind, bytes]],
                  framed: Mapping[BlobId, bytes]) -> list[tuple[bytes, bytes]]:
        """(key, stored bytes) of the blobs to put: those framed before the lock, and those present when framing
        began but gone now (a gc of unreferenced blobs ran in between) framed here.

        Raises:
            CorruptionError: a blob's bytes do not hash to its id.
        """
        db = self.env.db(DB_BLOBS)
        return [(blob.encode(), framed[blob] if blob in framed else _framed_blob(blob, kind, payload))
                for blob, (kind, payload) in blobs.items() if blob in framed or txn.get(blob.encode(), db=db) is None]

    def _put_blobs(self, txn: IndexTxn, puts: list[tuple[bytes, bytes]]) -> None:
        db = self.env.db(DB_BLOBS)
        for key, stored in puts:
            txn.put(key, stored, db=db, overwrite=False)  # one stored meanwhile holds the same bytes

    def register_intents(self, chunks: Iterable[ChunkId]) -> None:
        """Record that this process is about to write `chunks`, so a concurrent gc leaves them alone."""
        value = json.dumps({"pid": os.getpid(), "time_us": time.time_ns() // 1000}).encode()
        with self.env.write() as txn:
            for chunk in chunks:
                txn.put(chunk.encode(), value, db=self.env.db(DB_INTENTS))

    def append(self, record: CommitRecord, *, base: CommitId, rebase: bool,
               blobs: Mapping[BlobId, tuple[BlobKind, bytes]], hook: CommitHook | None = None,
               placeable: frozenset[str] = frozenset(), read: frozenset[str] = frozenset(),
               action: str = "commit", mover: str | None = None,
               own: Mapping[BlobId, bytes] | None = None) -> tuple[CommitId, CommitRecord]:
        """The commit point: store `record` on `record.branch` in one durable LMDB transaction, shared with
        overlapping appends of this handle's other threads (`udr.log.groupcommit`) unless it has a `hook`.

        `base` is the head the writer started from. If the branch moved since and `rebase` is true, the
        commit is placed on the new head (a linear history) when the commits in between commute with it
        (`udr.log.placement`; `placeable`: the tables whose op stays valid over concurrent changes of other
        fragments; `own`: see `keyplace.repoint`). The record's first parent, seq and time are assigned here.
        The head's move is recorded in the ref log under `action` ("commit", "merge", ...) with the record's
        message, by `mover` (who moved the branch; default: the record's author).

        Raises:
            HeadMoved: a commit in between changed one of its tables otherwise; the writer may rebase and retry.
            ConflictError: the branch moved and `rebase` is false, the branch was reset to a commit that does
                not descend from `base`, or a commit in between changed a table in `read` (serializable).
            RefNotFound: the branch does not exist.
        """
        item = Append(record, base, rebase, blobs, self._framed(blobs), placeable, read, action, mover, own or {})
        if hook is None:
            stored = self._group.append(item, self._write_batch)
            self.env.durable(stored.txnid)
            return stored.cid, stored.record
        with self.env.write() as txn:
            cid, final = self._write(txn, item, self._checked(txn, item, {}), {}, hook)
        self._remember(cid, final)
        return cid, final

    def _committed(self, cid: CommitId) -> bool:
        with self.env.read() as txn:
            return txn.get(cid.encode(), db=self.env.db(DB_COMMITS)) is not None

    def _write_batch(self, batch: list[Append], outcomes: list[Stored | Exception]) -> None:
        """Store the appends of `batch` that pass their checks in one write transaction, each placed on the
        head the one before left; add each one's outcome to `outcomes`."""
        placed: dict[CommitId, CommitRecord] = {}
        with self.env.write() as txn:
            txnid = int(txn.id())
            for item in batch:
                try:
                    checked = self._checked(txn, item, placed)
                except Exception as exc:  # noqa: BLE001 - its owner raises it; the others still commit
                    outcomes.append(exc)
                    continue
                cid, final = self._write(txn, item, checked, placed)
                placed[cid] = final
                outcomes.append(Stored(cid, final, txnid))
        for cid, final in placed.items():
            self._remember(cid, final)  # only once committed: the next commit's parent, read without decoding

    def _checked(self, txn: IndexTxn, item: Append, placed: Mapping[CommitId, CommitRecord]) -> _Checked:
        """`item` placed on its branch's head in `txn` (`placed`: records this transaction stored already),
        checked before anything is written: its record, the head and the blobs to put."""
        record = item.record
        head = self.head(record.branch, txn)
        if head is None:
            raise RefNotFound(f"branch {record.branch!r} does not exist"
                              + close_matches(record.branch, self.branches()))
        blobs = item.blobs
        if head != item.base:
            if not item.rebase:
                raise ConflictError(f"branch {record.branch!r} moved from {item.base[:7]} to {head[:7]} after this "
                                    "operation began; reload and retry")
            between = placed_over(record, item.base, head, lambda c: placed.get(c) or self.get_commit(c, txn),
                                  placeable=item.placeable, read=item.read)
            record, blobs = repoint(record, between, blobs, lambda v: self._stored_blob(txn, v, BlobKind.DELETES),
                                    own=item.own, chained=self.version >= CHAINED_VECTORS_VERSION, head=head)
        replaced = self.env.db(DB_REPLACED)
        erased = txn.stat(replaced)["entries"]
        for op in record.tables.values():
            for d in op.deletes if erased else ():
                if txn.get(d.chunk.encode(), db=replaced) is not None:  # staged before an erasure replaced it
                    raise ConflictError(f"an erasure replaced chunk {d.chunk[:10]} after this operation began; retry")
            for frag in op.add:
                if not frag.inline and not self.chunks.exists(frag.chunk):
                    raise ConflictError(f"chunk {frag.chunk} vanished before commit (concurrent gc?); retry")
        return _Checked(record, head, self._to_store(txn, blobs, item.framed))

    def _write(self, txn: IndexTxn, item: Append, checked: _Checked, placed: Mapping[CommitId, CommitRecord],
               hook: CommitHook | None = None) -> tuple[CommitId, CommitRecord]:
        """Write `checked` (`item` placed) in `txn`: its blobs, its chunks' intents cleared, the commit."""
        record, head = checked.record, checked.head
        self._put_blobs(txn, checked.puts)
        for op in record.tables.values():
            for frag in op.add:
                if not frag.inline:
                    txn.delete(frag.chunk.encode(), db=self.env.db(DB_INTENTS))
        if hook is not None:
            hook(txn, self.env)
        # Stamped last, so the time is as close as possible to the moment the commit becomes durable.
        parent_time = (placed.get(head) or self.get_commit(head, txn)).time_us
        reason = Reason(item.action, record.message, item.mover or record.author)
        return self._store_commit(txn, record, record.branch, head, reason, parents=(head, *record.parents[1:]),
                                  time_us=max(time.time_ns() // 1000, parent_time + 1))

    def _store_commit(self, txn: IndexTxn, record: CommitRecord, branch: str, expected: CommitId | None, why: Reason,
                      *, parents: tuple[CommitId, ...] | None = None, time_us: int | None = None,
                      ) -> tuple[CommitId, CommitRecord]:
        """Store `record`, given its seq (and `parents` and `time_us` when given), as the new head of `branch`."""
        cursor = txn.cursor(db=self.env.db(DB_SEQS))
        seq = int(struct.unpack(">Q", cursor.key())[0]) + 1 if cursor.last() else 0
        final = replace(record, seq=seq, parents=record.parents if parents is None else parents,
                        time_us=record.time_us if time_us is None else time_us)
        canonical = encode_commit(final)
        cid = commit_id(canonical)
        txn.put(cid.encode(), framed(BlobKind.COMMIT, canonical), db=self.env.db(DB_COMMITS))  # cid hashes it
        txn.put(_seq_key(seq), cid.encode(), db=self.env.db(DB_SEQS))
        self.set_ref(txn, branch_key(branch), cid, expected, why, time_us=final.time_us)
        return cid, final

    def set_ref(self, txn: IndexTxn, key: bytes, new: CommitId | None, expected: CommitId | None, why: Reason,
                *, time_us: int | None = None) -> None:
        """Compare-and-swap a ref inside `txn` (`new` None deletes it) and record the move, for `why`, in the
        ref log of the same transaction (at `time_us`, default now).

        Raises:
            ConflictError: the ref no longer holds `expected`.
        """
        move_ref(txn, self.env.db(DB_REFS), self.env.db(DB_REFLOG), key, new, expected, why, time_us=time_us)

    def update_ref(self, key: bytes, new: CommitId | None, expected: CommitId | None, why: Reason) -> None:
        """Compare-and-swap a ref, and record its move for `why`, in one durable write transaction.

        Raises:
            ConflictError: the ref no longer holds `expected`.
        """
        with self.env.write() as txn:
            self.set_ref(txn, key, new, expected, why)

    # -- garbage ------------------------------------------------------------------------------------

    def referenced_chunks(self, txn: IndexTxn | None = None) -> set[ChunkId]:
        """Every file chunk that some commit in the log adds (reachable from a ref or not)."""
        return garbage.referenced_chunks(self, txn)

    def collect_garbage(self, progress: Callable[[int], None] | None = None, *, keep: GcKeep | None = None) -> int:
        """Delete chunk files no commit references (or, with `keep`, that it does not keep), no pin keeps
        (udr.log.pins) and no live writer intends to commit; return bytes freed (`udr.log.garbage`)."""
        return garbage.collect_garbage(self, progress, keep)
