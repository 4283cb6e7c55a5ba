"""Group commit of the threads of one process: appends that overlap share one LMDB write transaction.

Alone, every commit is its own LMDB write transaction, and so its own fsync of the data file inside LMDB's
writer lock: threads committing at the same moment would queue for the lock and for the disk one by one. Here
the first thread to append leads: it takes every append queued meanwhile and stores them all in one write
transaction, in arrival order, each placed on the head the previous one left (`LogStore.append`'s rules), then
commits once. The threads that queued wait for the leader, then return the outcome it recorded for them: their
commit, or the error their own append raised. A commit still returns only once it is durable: each thread makes
the shared transaction durable itself (`Environment.durable`), which the log's sync mark turns into one fsync
for all of them (`udr.log.syncmark`).

Failures stay with their owner. An append that fails its checks (a conflict, a vanished chunk) is left out of
the transaction and gets its error. A failure of the transaction itself (a full disk, a lost race of a
replicated log) is raised by the leader, and the other appends of its group are queued again, in front, for
the next leader: each thread meets such a failure in its own transaction, never in another's. A transaction that
raises after its commit (Ctrl-C, a failed fsync) still gives the others their commits: the leader asks the log.
An append interrupted (Ctrl-C) while it waits leaves the queue and never commits, unless a leader took it
already (then it commits, as a commit interrupted after its commit point does).

Threads of one `LogStore` share it; separate processes still queue on LMDB's writer lock. Safe across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from udr.log.commits import CommitRecord
from udr.log.format import BlobId, BlobKind, CommitId


@dataclass(frozen=True, slots=True)
class Append:
    """One commit to store (the arguments of `LogStore.append`), with its blobs framed before the lock."""

    record: CommitRecord
    base: CommitId
    rebase: bool
    blobs: Mapping[BlobId, tuple[BlobKind, bytes]]
    framed: Mapping[BlobId, bytes]
    placeable: frozenset[str]
    read: frozenset[str]
    action: str
    mover: str | None
    own: Mapping[BlobId, bytes]


@dataclass(frozen=True, slots=True)
class Stored:
    """An append's commit: its id, its final record and the write transaction that stored it."""

    cid: CommitId
    record: CommitRecord
    txnid: int


class Queued:
    """An append waiting in a group; `outcome` is set by the leader that stored it (or found it failing), once
    its transaction committed."""

    __slots__ = ("append", "outcome")

    def __init__(self, append: Append) -> None:
        self.append = append
        self.outcome: Stored | Exception | None = None


# Stores a batch in one write transaction, adding each append's outcome, in order, to the list it is given as it
# goes; raises for the transaction as a whole.
BatchWriter = Callable[[list[Append], list[Stored | Exception]], None]


class GroupCommit:
    """The queue of appends of one log handle's threads, and the leadership: a lock its leader holds while it
    stores a batch, which the other threads wait on (a lock, so an interrupted leader never leaves it taken)."""

    def __init__(self, committed: Callable[[CommitId], bool]) -> None:
        """`committed(cid)`: whether commit `cid` is in the log (after a leader's failure: did it commit first?)."""
        self._guard = threading.Lock()
        self._queue: list[Queued] = []
        self._leadership = threading.Lock()
        self._committed = committed

    def append(self, append: Append, write: BatchWriter) -> Stored:
        """Store `append`, alone or in the batch of whichever thread leads, and return its commit.

        Raises:
            Exception: what storing `append` raised (its checks, or the leader's transaction when this thread
                led it).
        """
        mine = Queued(append)
        with self._guard:
            self._queue.append(mine)
        try:
            with self._leadership:  # waits for the leader: its batch may hold this append
                if mine.outcome is None:  # not stored by the last leader: lead the queue, this append among it
                    with self._guard:
                        batch, self._queue = self._queue, []
                    self._lead(batch, mine, write)
        except BaseException:  # interrupted (Ctrl-C) before a leader took it, or led and failed: not queued
            with self._guard:
                if mine in self._queue:
                    self._queue.remove(mine)
            raise
        outcome = mine.outcome
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None  # a leader sets every outcome of its batch, or raises
        return outcome

    def _lead(self, batch: list[Queued], mine: Queued, write: BatchWriter) -> None:
        outcomes: list[Stored | Exception] = []
        done = False
        try:
            write([queued.append for queued in batch], outcomes)
            done = True
        finally:
            # Raised after its commit (Ctrl-C, a failed fsync), the transaction still holds the others' commits:
            # queued again, they would commit twice.
            stored = next((o.cid for o in outcomes if isinstance(o, Stored)), None)
            done = done or (len(outcomes) == len(batch) and stored is not None and self._committed(stored))
            with self._guard:
                if done:  # published only now: an outcome seen before the commit would name a commit not yet there
                    for queued, outcome in zip(batch, outcomes, strict=True):
                        queued.outcome = outcome
                else:  # the transaction failed: the others go first to the next leader
                    self._queue[:0] = [queued for queued in batch if queued is not mine]
