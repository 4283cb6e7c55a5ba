"""The lake log as the layers above `udr/log` use it: the `LakeLog` Protocol, with no implementation; and
the retention check readers make (`ReadableCheck`, implemented by `udr.log.retention.RetentionStore`).

`udr.log.store.LogStore` keeps the log in LMDB files and `udr.log.memory.MemoryLogStore` in memory; both
satisfy `LakeLog`, and mypy checks it wherever one is handed on. Only the code that opens a lake (`udr.open`,
the remote lake's transfers) constructs a `LogStore`; everything else (snapshots, row readers, SQL, change
feeds, publishing, retention, the facade) types the log it is given as `LakeLog`, so depending on the log
does not mean depending on LMDB, its index and its labels. The invariants are `LogStore`'s: a commit becomes
visible only in `append`'s single write transaction, refs move by compare-and-swap, bytes read back are
verified against their ids. Safe across threads and processes as the implementation is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

from udr.log.chunks import FileChunkStore
from udr.log.commits import CommitRecord
from udr.log.envtypes import CommitHook, IndexTxn, LogEnvironments
from udr.log.format import COLUMN_IDS_VERSION, BlobId, BlobKind, ChunkId, CommitId
from udr.log.reflog import Move, Reason
from udr.log.turns import Turns

# Decides, inside gc's write transaction, which chunk files commits still need, and may drop log blobs
# there too; returns (chunks to keep, blob bytes freed).
GcKeep = Callable[[IndexTxn], tuple[set[ChunkId], int]]


class LakeLog(LogEnvironments, Protocol):
    """The log of one lake: commits, refs, blobs and chunk intents (`env`, `cache`), chunk files (`chunks`).

    Attributes:
        root: the lake directory.
        version: the lake's format version.
        chunks: the lake's chunk files.
        turns: the writers' turns (`udr.log.turns`).
    """

    root: Path
    version: int
    chunks: FileChunkStore
    turns: Turns

    def upgrade_format(self, version: int = COLUMN_IDS_VERSION) -> None:
        """Label an older lake with format `version`, before writing data only that version describes."""
        ...

    def close(self) -> None:
        """Release the log's environments."""
        ...

    def get_commit(self, cid: CommitId, txn: IndexTxn | None = None, *, cached: bool = True) -> CommitRecord:
        """Return the record of commit `cid`, verified against its id.

        Raises:
            RefNotFound: no such commit.
            CorruptionError: the stored bytes do not hash to `cid`.
        """
        ...

    def head(self, branch: str, txn: IndexTxn | None = None) -> CommitId | None:
        """The head commit of `branch`, or None if there is no such branch."""
        ...

    def refs(self, prefix: bytes) -> dict[str, CommitId]:
        """All refs of one kind (`REF_BRANCH` or `REF_TAG`): name -> commit id."""
        ...

    def branches(self) -> dict[str, CommitId]:
        """Every branch: name -> head commit id."""
        ...

    def tags(self) -> dict[str, CommitId]:
        """Every tag: name -> commit id."""
        ...

    def ref_moves(self, *, newest_first: bool = True) -> list[Move]:
        """Every move of a ref recorded in the ref log, newest first unless told."""
        ...

    def find_commits(self, prefix: str) -> list[CommitId]:
        """Ids of the commits whose hex id starts with `prefix` (at most two, enough to spot ambiguity)."""
        ...

    def last_seq(self) -> int:
        """The sequence number of the newest commit in the log."""
        ...

    def commits_from(self, seq: int) -> Iterator[tuple[int, CommitId]]:
        """(seq, id) of every commit with sequence number >= `seq`, in log order."""
        ...

    def commit_at_seq(self, seq: int) -> CommitId | None:
        """The id of the commit at log position `seq`."""
        ...

    def get_blob(self, blob: BlobId, kind: BlobKind) -> bytes:
        """Return the payload of a blob stored in the log.

        Raises:
            CorruptionError: missing, or does not hash to its id.
        """
        ...

    def has_blob(self, blob: BlobId) -> bool:
        """Whether blob `blob` is stored in the log."""
        ...

    def blob_size(self, blob: BlobId) -> int:
        """Stored size of a log blob, 0 when missing."""
        ...

    def put_blobs_now(self, blobs: Mapping[BlobId, tuple[BlobKind, bytes]]) -> None:
        """Store blobs in their own durable write (for blobs needed before a commit, e.g. schemas)."""
        ...

    def register_intents(self, chunks: Iterable[ChunkId]) -> None:
        """Record that this process is about to write `chunks`, so a concurrent gc leaves them alone."""
        ...

    def append(self, record: CommitRecord, *, base: CommitId, rebase: bool,
               blobs: Mapping[BlobId, tuple[BlobKind, bytes]], hook: CommitHook | None = None,
               placeable: frozenset[str] = frozenset(), read: frozenset[str] = frozenset(),
               action: str = "commit", mover: str | None = None,
               own: Mapping[BlobId, bytes] | None = None) -> tuple[CommitId, CommitRecord]:
        """The commit point: store `record` on `record.branch` in one durable write transaction; return its
        id and the record as stored (placed on a moved head when `rebase` and the commits in between commute).

        Raises:
            ConflictError: the branch moved and the commit cannot be placed (`HeadMoved` when it may be
                re-expressed on the new head).
        """
        ...

    def set_ref(self, txn: IndexTxn, key: bytes, new: CommitId | None, expected: CommitId | None, why: Reason,
                *, time_us: int | None = None) -> None:
        """Compare-and-swap a ref inside `txn` (`new` None deletes it) and record the move in the ref log.

        Raises:
            ConflictError: the ref no longer holds `expected`.
        """
        ...

    def update_ref(self, key: bytes, new: CommitId | None, expected: CommitId | None, why: Reason) -> None:
        """Compare-and-swap a ref, and record its move for `why`, in one durable write transaction.

        Raises:
            ConflictError: the ref no longer holds `expected`.
        """
        ...

    def referenced_chunks(self, txn: IndexTxn | None = None) -> set[ChunkId]:
        """Every file chunk that some commit in the log adds (reachable from a ref or not)."""
        ...

    def collect_garbage(self, progress: Callable[[int], None] | None = None, *, keep: GcKeep | None = None) -> int:
        """Delete chunk files no commit references (or, with `keep`, that it does not keep), no pin keeps and
        no live writer intends to commit; return bytes freed."""
        ...


class ReadableCheck(Protocol):
    """Whether a version's data is still there to read (`udr.log.retention.RetentionStore`).

    The facade's context holds the lake's retention store as one: a reader checks a version before it
    reads it, without depending on how policies, holds and expired records are stored.
    """

    def check_readable(self, commit: CommitId, tables: Iterable[str]) -> None:
        """Raise `Expired` if the data of one of `tables` at `commit` is expired."""
        ...
