"""The types of the log's LMDB environments: what the log's modules need of an environment and its
transactions, as Protocols and aliases with no implementation.

Low in `udr/log` so the modules that keep records in an environment (groups, pins, erasures, caches) and
`udr.log.store` depend on these types and not on one another; `udr.log.index` holds the LMDB implementation,
`udr.log.memory` the in-memory one. Nothing outside `udr/log` sees an environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Protocol, TypeAlias

import lmdb

# What `Environment.read()` and `write()` yield. They begin transactions without `buffers=True`, so every
# key and value LMDB returns through one is `bytes`, never a `memoryview`. A string because
# `lmdb.Transaction` cannot be subscripted at runtime.
IndexTxn: TypeAlias = "lmdb.Transaction[bytes]"



class WriteWatcher(Protocol):
    """Sees every watched write transaction of one environment (a lake mirrored elsewhere publishes through it).

    `begin` runs right after the transaction starts, inside LMDB's writer lock; `finish` runs just before it
    commits, and raising there aborts the transaction, so what it publishes and what commits locally agree.
    """

    def begin(self, txn: IndexTxn) -> object:
        """Note where the log stands as `txn` begins; the value comes back to `finish`."""
        ...

    def finish(self, txn: IndexTxn, began: object) -> None:
        """Publish what `txn` wrote since `began`, or raise to abort it."""
        ...

    def aborted(self) -> None:
        """`finish` raised and the transaction is aborted; LMDB's writer lock is free again."""
        ...


class Environment(Protocol):
    """What the log's modules need of an environment: named sub-databases, snapshot reads, serialized atomic
    writes. `LmdbEnvironment` keeps it in files; `udr.log.memory.MemoryEnvironment` in dicts (for tests and
    in-memory lakes). Nothing outside `udr/log` sees one: upper layers go through the log's typed stores."""

    def db(self, name: bytes) -> lmdb._Database:
        """Return the handle of sub-database `name`."""
        ...

    def read(self) -> AbstractContextManager[IndexTxn]:
        """A read-only snapshot transaction."""
        ...

    def write(self, *, watched: bool = True) -> AbstractContextManager[IndexTxn]:
        """A write transaction: committed (durably, for a durable log) on clean exit, aborted on error."""
        ...

    def deferred_sync(self) -> AbstractContextManager[None]:
        """Write transactions of this thread inside the block return once committed; the block's end returns
        once every one of them is durable."""
        ...

    def durable(self, txnid: int) -> None:
        """Return once write transaction `txnid` (committed by any thread of this process) is durable; inside a
        `deferred_sync` block of this thread, once the block ends."""
        ...

    def watch(self, watcher: WriteWatcher | None) -> None:
        """Have `watcher` see every watched write transaction (None: stop)."""
        ...

    def hold(self, chunk: str) -> None:
        """Note that an open transaction of this process will commit `chunk` (gc keeps it)."""
        ...

    def release(self, chunks: Iterable[str]) -> None:
        """The transaction holding `chunks` ended."""
        ...

    def held(self) -> set[str]:
        """Chunks held by open transactions of this process."""
        ...

    def free_pages(self) -> tuple[int, int]:
        """(page size, pages of the data file no sub-database uses)."""
        ...

    def renew(self) -> None:
        """Drop every buffer that may hold bytes of deleted values."""
        ...

    def last_txnid(self) -> int:
        """The id of the newest write transaction: a change means some writer committed since."""
        ...

    def published(self, txnid: int) -> bool:
        """Whether new readers already see write transaction `txnid`."""
        ...

    def wait_published(self, limit: float = 1.0) -> None:
        """Wait (at most `limit` seconds) until new readers see every committed write transaction."""
        ...

    def clear(self) -> None:
        """Empty every sub-database."""
        ...

    def close(self) -> None:
        """Release this handle."""
        ...


class LogEnvironments(Protocol):
    """A lake log's environments (a `LogStore`), as the modules that `udr.log.store` does not need take it."""

    env: Environment
    cache: Environment


# A `LogStore.append` hook: runs inside the commit's own write transaction (e.g. to move group positions).
CommitHook = Callable[[IndexTxn, Environment], None]
