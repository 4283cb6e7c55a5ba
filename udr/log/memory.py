"""The in-memory twin of the log's LMDB environments, and a lake log that lives in it (`MemoryLogStore`).

`MemoryEnvironment` keeps each named sub-database in a dict and offers the subset of an LMDB transaction that
the modules of `udr.log` use (get, put with `overwrite`, delete, cursors with `set_range`/`last`/iteration,
`stat`, `drop`, `id`), with LMDB's semantics: a read transaction sees the state committed when it began and
never blocks; write transactions are serialized by a lock, see their own writes, and commit all their writes
at once or (on an error) none of them. So every module of the log (commits, refs and the ref log, blobs,
groups, members, pins, erasures, retention, publications) runs unchanged on it, and the same code is what the
tests check on both (tests/log/test_memory.py compares them on random sequences of commits and ref moves).

Invariants: committed state is never mutated (a write transaction copies each sub-database it changes and
swaps the copies in at commit), so readers need no lock. Safe across threads; nothing is shared with another
process or another environment, and nothing is durable: closing the environment drops it.
"""

from __future__ import annotations

import bisect
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import cast

import lmdb

from udr.errors import UdrError
from udr.log.envtypes import IndexTxn, WriteWatcher
from udr.log.format import CACHE_DBS, LOG_DBS, LOG_DIR
from udr.log.store import LogStore

_Tables = dict[bytes, dict[bytes, bytes]]


class _MemoryCursor:
    """A cursor over one sub-database as its transaction saw it when the cursor was made (udr.log never
    writes through a cursor, and collects keys before deleting them)."""

    __slots__ = ("_items", "_keys", "_pos")

    def __init__(self, table: dict[bytes, bytes]) -> None:
        self._keys = sorted(table)
        self._items = table
        self._pos = -1  # unpositioned: iteration starts at the first key

    def set_range(self, key: bytes) -> bool:
        self._pos = bisect.bisect_left(self._keys, bytes(key))
        return self._pos < len(self._keys)

    def first(self) -> bool:
        self._pos = 0
        return bool(self._keys)

    def last(self) -> bool:
        self._pos = len(self._keys) - 1
        return self._pos >= 0

    def key(self) -> bytes:
        return self._keys[self._pos] if 0 <= self._pos < len(self._keys) else b""

    def value(self) -> bytes:
        return self._items[self._keys[self._pos]] if 0 <= self._pos < len(self._keys) else b""

    def iternext(self, keys: bool = True, values: bool = True) -> Iterator[object]:
        start = max(self._pos, 0)
        for pos in range(start, len(self._keys)):
            self._pos = pos
            key = self._keys[pos]
            if keys and values:
                yield key, self._items[key]
            else:
                yield key if keys else self._items[key]
        self._pos = len(self._keys)

    def __iter__(self) -> Iterator[object]:
        return self.iternext()


class _MemoryTxn:
    """One transaction of a `MemoryEnvironment`: reads `base`; a write transaction copies a table on its first
    change to it, and `changed` holds the copies until commit."""

    __slots__ = ("_base", "_closed", "_id", "changed", "write")

    def __init__(self, base: _Tables, txnid: int, *, write: bool) -> None:
        self._base = base
        self._id = txnid
        self.write = write
        self.changed: _Tables = {}
        self._closed = False

    def _table(self, db: object) -> dict[bytes, bytes]:
        if self._closed:
            raise UdrError("index transaction used after it ended")
        name = cast(bytes, db)
        return self.changed.get(name, self._base[name])

    def _mutable(self, db: object) -> dict[bytes, bytes]:
        if not self.write:
            raise UdrError("index write failed: the transaction is read-only")
        name = cast(bytes, db)
        table = self.changed.get(name)
        if table is None:
            table = self.changed[name] = dict(self._table(db))
        return table

    def id(self) -> int:
        return self._id

    def get(self, key: bytes, default: bytes | None = None, db: object = None) -> bytes | None:
        return self._table(db).get(bytes(key), default)

    def put(self, key: bytes, value: bytes, dupdata: bool = True, overwrite: bool = True, append: bool = False,
            db: object = None) -> bool:
        table = self._mutable(db)
        if not overwrite and bytes(key) in table:
            return False
        table[bytes(key)] = bytes(value)
        return True

    def delete(self, key: bytes, value: bytes = b"", db: object = None) -> bool:
        return self._mutable(db).pop(bytes(key), None) is not None

    def cursor(self, db: object = None) -> _MemoryCursor:
        return _MemoryCursor(self._table(db))

    def stat(self, db: object = None) -> dict[str, int]:
        return {"entries": len(self._table(db)), "psize": 4096, "depth": 0, "branch_pages": 0, "leaf_pages": 0,
                "overflow_pages": 0}

    def drop(self, db: object, delete: bool = True) -> None:
        self._mutable(db).clear()

    def end(self) -> None:
        self._closed = True


class _MemoryTxnContext:
    """A `MemoryEnvironment` transaction as a context manager: a write commits on clean exit, aborts on error."""

    __slots__ = ("_env", "_txn", "_watched", "_write")

    def __init__(self, env: MemoryEnvironment, *, write: bool, watched: bool) -> None:
        self._env = env
        self._write = write
        self._watched = watched

    def __enter__(self) -> IndexTxn:
        self._txn = self._env.begin_txn(write=self._write, watched=self._watched)
        return cast(IndexTxn, self._txn)  # it offers the part of lmdb.Transaction that udr.log uses

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._env.end_txn(self._txn, commit=exc_type is None, watched=self._watched)


class MemoryEnvironment:
    """An `Environment` in dicts: LMDB's transaction semantics, nothing durable, nothing shared between processes."""

    def __init__(self, names: Iterable[bytes]) -> None:
        """An empty environment with the sub-databases `names`."""
        # The committed tables and the id of the write that committed them, swapped as one (a reader never
        # pairs new tables with an old id or the reverse); None once closed.
        self._state: tuple[_Tables, int] | None = ({name: {} for name in names}, 0)
        self._writer = threading.Lock()  # LMDB's writer lock: one write transaction at a time
        self._held: Counter[str] = Counter()
        self._held_lock = threading.Lock()
        self._watcher: WriteWatcher | None = None
        self._began: object = None  # what the watcher noted as the current write transaction began

    @property
    def _live(self) -> tuple[_Tables, int]:
        state = self._state
        if state is None:
            raise UdrError("this lake handle is closed")
        return state

    def db(self, name: bytes) -> lmdb._Database:
        """The handle of sub-database `name` (its name: the transactions look it up)."""
        if name not in self._live[0]:
            raise UdrError(f"index has no sub-database {name!r}")
        return cast(lmdb._Database, name)

    def read(self) -> _MemoryTxnContext:
        """A read-only snapshot transaction (a context manager)."""
        return _MemoryTxnContext(self, write=False, watched=False)

    def write(self, *, watched: bool = True) -> _MemoryTxnContext:
        """A write transaction (a context manager), committed on clean exit and aborted on error."""
        return _MemoryTxnContext(self, write=True, watched=watched)

    def deferred_sync(self) -> AbstractContextManager[None]:
        """Nothing to defer: nothing is durable."""
        return nullcontext()

    def begin_txn(self, *, write: bool, watched: bool) -> _MemoryTxn:
        """Begin a transaction (`write`: wait for the writer lock first); `_MemoryTxnContext` calls it."""
        if not write:
            return _MemoryTxn(*self._live, write=False)
        self._writer.acquire()
        try:
            tables, txnid = self._live
            txn = _MemoryTxn(tables, txnid + 1, write=True)
            if watched and self._watcher is not None:
                self._began = self._watcher.begin(cast(IndexTxn, txn))
        except BaseException:
            self._writer.release()
            raise
        return txn

    def end_txn(self, txn: _MemoryTxn, *, commit: bool, watched: bool) -> None:
        """Commit (all of `txn`'s writes at once) or abort `txn`, and release the writer lock it holds."""
        txn.end()
        if not txn.write:
            return
        try:
            if commit and watched and self._watcher is not None:
                try:
                    self._watcher.finish(cast(IndexTxn, txn), self._began)
                except BaseException:
                    self._watcher.aborted()
                    raise
            if commit and txn.changed:
                # A new dict of tables: readers holding the old one keep their snapshot.
                self._state = ({**self._live[0], **txn.changed}, txn.id())
        finally:
            self._writer.release()

    def durable(self, txnid: int) -> None:
        """Nothing to wait for: nothing is durable."""

    def watch(self, watcher: WriteWatcher | None) -> None:
        """Have `watcher` see every watched write transaction (None: stop)."""
        self._watcher = watcher

    def hold(self, chunk: str) -> None:
        """Note that an open transaction will commit `chunk` (gc keeps it)."""
        with self._held_lock:
            self._held[chunk] += 1

    def release(self, chunks: Iterable[str]) -> None:
        """The transaction holding `chunks` ended."""
        with self._held_lock:
            for chunk in chunks:
                self._held[chunk] -= 1
                if self._held[chunk] <= 0:
                    del self._held[chunk]

    def held(self) -> set[str]:
        """Chunks held by open transactions."""
        with self._held_lock:
            return set(self._held)

    def free_pages(self) -> tuple[int, int]:
        """(page size, free pages): a dict keeps no freed pages."""
        return 4096, 0

    def renew(self) -> None:
        """Nothing to renew: a deleted value's bytes are gone with its dict entry."""

    def last_txnid(self) -> int:
        """The id of the newest committed write transaction."""
        return self._live[1]

    def published(self, txnid: int) -> bool:
        """Whether new readers see write transaction `txnid` (every committed one: commit publishes)."""
        return self._live[1] >= txnid

    def wait_published(self, limit: float = 1.0) -> None:
        """Returns at once: a commit is visible to readers the moment it commits."""

    def clear(self) -> None:
        """Empty every sub-database."""
        with self.write() as txn:
            for name in self._live[0]:
                txn.drop(self.db(name), delete=False)

    def close(self) -> None:
        """Drop the contents; later use raises `UdrError`."""
        self._state = None


class MemoryLogStore(LogStore):
    """A lake log held in memory: `LogStore` over two `MemoryEnvironment`s, chunk files in a private temporary
    directory (DuckDB and the readers take chunks by path), removed on `close`. Nothing survives `close`;
    `udr.open(":memory:")` opens a lake on one."""

    def __init__(self) -> None:
        """An empty lake: branch `main` with its root commit."""
        self.scratch = Path(tempfile.mkdtemp(prefix="udr-memory-"))
        (self.scratch / LOG_DIR).mkdir()  # the writers' turn lock file lives there (`udr.log.turns`)
        super().__init__(self.scratch, envs=(MemoryEnvironment(LOG_DBS), MemoryEnvironment(CACHE_DBS)))

    def close(self) -> None:
        """Drop the log and delete the chunk directory."""
        super().close()
        shutil.rmtree(self.scratch, ignore_errors=True)

