"""The LMDB environments of a lake: `log/` (durable, the source of truth) and `cache/` (derived).

LMDB forbids opening one environment twice in a process (a second open shares and then breaks the
first one's locks), so environments are shared through a process-wide registry with reference counts;
this is the one piece of module-level state in UDR and it exists for that rule. Environments are safe
across threads: each thread uses its own transactions, and write transactions are serialized by LMDB
across threads and processes.

The log environment is durable with group commit: LMDB syncs a write transaction's pages inside its commit
but not its meta page (`metasync=False`, which keeps the file consistent: a power failure can only undo the
newest transactions), and the writer then waits for its `SyncMark` (`udr/log/syncmark.py`), which makes every
transaction committed so far durable with one fsync shared by the writers of every process waiting at that
moment, or skips it when a later commit's fsync already covered this one. Concurrent writers so spend one fsync
each inside LMDB's writer lock instead of two, and share the second. A write returns only once it is durable;
inside `deferred_sync` (a writer leaving its turn before it waits for the disk), the end of the block does.
The cache environment skips fsync: its contents are keyed by immutable ids and can be rebuilt by replay, so a
lost write only costs time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import lmdb
import zstandard

from udr.errors import CorruptionError, FormatError, UdrError
from udr.log.envtypes import IndexTxn, WriteWatcher
from udr.log.format import (
    BLOB_MAGIC,
    CACHE_DBS,
    CACHE_MAP_SIZE,
    LOG_DATA_FILE,
    LOG_DBS,
    LOG_MAP_SIZE,
    MAX_DBS,
    ZSTD_LEVEL,
    ZSTD_MIN_BYTES,
    BlobKind,
    Codec,
)
from udr.log.hashing import content_id
from udr.log.syncmark import SyncMark

# How many times `wait_published` yields the CPU before it starts sleeping between looks.
_PUBLISH_SPINS = 200


@dataclass(slots=True)
class _Shared:
    env: lmdb.Environment
    dbs: dict[bytes, lmdb._Database]
    users: int
    # Chunks that open transactions of this process (any handle) are about to commit.
    held: Counter[str]
    # Group commit of a durable environment (None: the cache, never synced).
    syncer: SyncMark | None
    # How it was opened (path, sub-database names, durable, map size), for `LmdbEnvironment.renew`.
    how: tuple[Path, tuple[bytes, ...], bool, int]
    watcher: WriteWatcher | None = None


def _open(path: Path, names: tuple[bytes, ...], *, durable: bool,
          map_size: int) -> tuple[lmdb.Environment, dict[bytes, lmdb._Database]]:
    env = None
    try:
        env = lmdb.open(str(path.resolve()), map_size=map_size, max_dbs=MAX_DBS, sync=durable, metasync=False,
                        max_readers=1024, max_spare_txns=4)
        return env, {name: env.open_db(name) for name in names}
    except lmdb.Error as exc:
        if env is not None:
            env.close()
        raise open_failure(path, exc) from exc


def _sync_mark(path: Path, env: lmdb.Environment) -> SyncMark:
    """The group commit of the durable environment `env` at `path` (closing `env` if it cannot be set up)."""
    try:
        return SyncMark(path, path / LOG_DATA_FILE, env)
    except UdrError:
        env.close()
        raise


_registry: dict[str, _Shared] = {}
_registry_lock = threading.Lock()


def _make_durable(txnid: int, syncer: SyncMark | None, pending: list[int] | None) -> None:
    """Make committed write transaction `txnid` durable (one shared fsync at most), or, while this thread defers
    its syncs (`pending`, `LmdbEnvironment.deferred_sync`), note it for the end of the block."""
    if pending is not None:
        pending.append(txnid)
    elif syncer is not None:
        syncer.sync(txnid)


class _Txn:
    """One LMDB transaction as a context manager that reports LMDB failures as `UdrError`.

    A class rather than a generator-based context manager: a change-feed look opens several read
    transactions, and this costs a third as much per transaction.
    """

    __slots__ = ("_began", "_env", "_pending", "_syncer", "_txn", "_watcher", "_write")

    def __init__(self, env: lmdb.Environment, *, write: bool, syncer: SyncMark | None = None,
                 watcher: WriteWatcher | None = None, pending: list[int] | None = None) -> None:
        self._env = env
        self._write = write
        self._syncer = syncer
        self._watcher = watcher
        self._pending = pending  # set: the sync is deferred (`LmdbEnvironment.deferred_sync`), the id goes here

    def __enter__(self) -> IndexTxn:
        try:
            self._txn = self._env.begin(write=self._write)
        except lmdb.Error as exc:
            raise self._failed(exc) from exc
        if self._watcher is not None:
            try:
                self._began = self._watcher.begin(self._txn)
            except BaseException:
                self._txn.abort()
                raise
        return self._txn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None and self._write:
            if self._watcher is not None:
                try:
                    self._watcher.finish(self._txn, self._began)
                except BaseException:
                    self._txn.abort()
                    self._watcher.aborted()
                    raise
            try:
                txnid = int(self._txn.id())
                self._txn.commit()
                _make_durable(txnid, self._syncer, self._pending)
            except lmdb.Error as failed:
                raise self._failed(failed) from failed
            return
        self._txn.abort()
        if isinstance(exc, lmdb.Error):
            raise self._failed(exc) from exc

    def _failed(self, exc: lmdb.Error) -> UdrError:
        return UdrError(f"index {'write' if self._write else 'read'} failed: {exc}")


class _DeferredSync:
    """`LmdbEnvironment.deferred_sync` (a class: every commit enters one, and a generator-based context manager
    cost a single writer's commit more than the bookkeeping itself)."""

    __slots__ = ("_deferring", "_syncer", "_txnids")

    def __init__(self, syncer: SyncMark | None, deferring: threading.local) -> None:
        self._syncer = syncer
        self._deferring = deferring
        self._txnids: list[int] | None = None

    def __enter__(self) -> None:
        if self._syncer is not None and getattr(self._deferring, "txnids", None) is None:  # else: nested, or no sync
            self._txnids = self._deferring.txnids = []

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        txnids = self._txnids
        if txnids is None or self._syncer is None:
            return
        self._deferring.txnids = None
        if txnids:
            try:
                self._syncer.sync(max(txnids))
            except lmdb.Error as failed:
                raise UdrError(f"index write failed: {failed}") from failed


# What LMDB reports for a file that is not a valid environment: damage. Anything else (permissions, a full
# disk or map, lock or reader-table trouble) is about the machine, and the files are fine.
_DAMAGE = (lmdb.CorruptedError, lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.PageNotFoundError,
           lmdb.BadChecksumError, lmdb.IncompatibleError, lmdb.PanicError)


def open_failure(path: Path, exc: lmdb.Error) -> UdrError:
    """`FormatError` for a damaged environment (a cache may then be started afresh), else a plain `UdrError`."""
    if isinstance(exc, _DAMAGE):
        return FormatError(f"cannot open the index at {path}: it is damaged ({exc})")
    return UdrError(f"cannot open the index at {path}: {exc}; check the directory's permissions, free disk "
                    "space and that no other program holds its lock, then retry")


class LmdbEnvironment:
    """One LMDB environment with its named sub-databases, shared within the process."""

    def __init__(self, path: Path, names: tuple[bytes, ...], *, durable: bool, map_size: int) -> None:
        self._key = str(path.resolve())
        with _registry_lock:
            shared = _registry.get(self._key)
            if shared is None:
                env, dbs = _open(path, names, durable=durable, map_size=map_size)
                shared = _Shared(env, dbs, 0, Counter(), _sync_mark(path, env) if durable else None,
                                 (path, names, durable, map_size))
                _registry[self._key] = shared
            shared.users += 1
        self._shared: _Shared | None = shared
        # Per thread: the ids of the write transactions committed inside `deferred_sync` (unset: none is open).
        self._deferring = threading.local()

    @property
    def _live(self) -> _Shared:
        if self._shared is None:
            raise UdrError("this lake handle is closed")
        return self._shared

    def db(self, name: bytes) -> lmdb._Database:
        """Return the handle of sub-database `name`."""
        return self._live.dbs[name]

    def read(self) -> _Txn:
        """A read-only snapshot transaction (a context manager): never blocks, sees one consistent state."""
        return _Txn(self._live.env, write=False)

    def write(self, *, watched: bool = True) -> _Txn:
        """A write transaction (a context manager); committed (and, for the log, durable) on clean exit,
        aborted on error. The environment's `WriteWatcher`, if any, sees it unless `watched` is false."""
        live = self._live
        return _Txn(live.env, write=True, syncer=live.syncer, watcher=live.watcher if watched else None,
                    pending=getattr(self._deferring, "txnids", None))

    def deferred_sync(self) -> _DeferredSync:
        """A context manager: write transactions of this thread inside the block return once committed, before
        they are durable; the block's end returns once every one of them is durable (one shared fsync at most,
        `SyncMark`), also when the block raises. A writer so leaves its writer turn (`udr.log.turns`) before it
        waits for the disk, and the next writer's work overlaps the fsync. Nested blocks defer to the outermost.

        Raises:
            UdrError: the sync mark cannot be locked, or LMDB fails to sync.
        """
        return _DeferredSync(self._live.syncer, self._deferring)

    def durable(self, txnid: int) -> None:
        """Return once write transaction `txnid` (committed by any thread of this process) is durable (one shared
        fsync at most, `SyncMark`); inside a `deferred_sync` block of this thread, once the block ends.

        Raises:
            UdrError: the sync mark cannot be locked, or LMDB fails to sync.
        """
        try:
            _make_durable(txnid, self._live.syncer, getattr(self._deferring, "txnids", None))
        except lmdb.Error as failed:
            raise UdrError(f"index write failed: {failed}") from failed

    def watch(self, watcher: WriteWatcher | None) -> None:
        """Have `watcher` see every watched write transaction of this environment, through any handle of this
        process (None: stop)."""
        self._live.watcher = watcher

    def hold(self, chunk: str) -> None:
        """Note that an open transaction of this process will commit `chunk` (gc keeps it)."""
        with _registry_lock:
            self._live.held[chunk] += 1

    def release(self, chunks: Iterable[str]) -> None:
        """The transaction holding `chunks` ended."""
        with _registry_lock:
            held = self._live.held
            for chunk in chunks:
                held[chunk] -= 1
                if held[chunk] <= 0:
                    del held[chunk]

    def held(self) -> set[str]:
        """Chunks held by open transactions of this process, through any handle."""
        with _registry_lock:
            return set(self._live.held)

    def free_pages(self) -> tuple[int, int]:
        """(page size, pages of the data file no sub-database uses: free ones, and the free list's own)."""
        env = self._live.env
        with self.read() as txn:
            stats = [txn.stat(db) for db in self._live.dbs.values()] + [env.stat()]
        used = sum(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats)
        return int(env.stat()["psize"]), max(0, int(env.info()["last_pgno"]) + 1 - 2 - used)

    def renew(self) -> None:
        """Close and reopen the LMDB environment in this process (every handle shares the new one).

        LMDB recycles a process's page buffers without clearing them, so bytes of deleted values can reach
        the unused space of pages it writes later; a reopened environment starts with no such buffers.
        Transactions other threads have open on it fail (`UdrError`) and must be retried.
        """
        with _registry_lock:
            shared = self._live
            path, names, durable, map_size = shared.how
            shared.env.close()
            if shared.syncer is not None:
                shared.syncer.close()
            shared.env, shared.dbs = _open(path, names, durable=durable, map_size=map_size)
            shared.syncer = _sync_mark(path, shared.env) if durable else None

    def last_txnid(self) -> int:
        """The id of the newest write transaction in the data file, read from its meta pages in memory
        (no disk access, never blocks): a change means some process committed a write since."""
        return int(self._live.env.info()["last_txnid"])

    def published(self, txnid: int) -> bool:
        """Whether new readers already see write transaction `txnid` (see `wait_published`)."""
        with self.read() as txn:
            return int(txn.id()) >= txnid

    def wait_published(self, limit: float = 1.0) -> None:
        """Wait (at most `limit` seconds) until new readers see every write transaction in the data file.

        LMDB writes a commit's meta page, the write that wakes a watcher of the data file, a moment before
        it publishes the commit to readers (the transaction id in the lock file); a watcher reading in that
        gap would miss the commit and sleep until the next one. The limit covers a writer that died there.
        """
        written = self.last_txnid()
        deadline = time.monotonic() + limit
        pause = 0.0001
        spins = _PUBLISH_SPINS  # the gap is usually microseconds: yield the CPU before sleeping
        while True:
            if self.published(written):
                return
            if time.monotonic() > deadline:
                return
            if spins:
                spins -= 1
                os.sched_yield()
                continue
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def clear(self) -> None:
        """Empty every sub-database (used to throw derived state away before a rebuild)."""
        with self.write() as txn:
            for handle in self._live.dbs.values():
                txn.drop(handle, delete=False)

    def close(self) -> None:
        """Release this handle; the environment closes when its last user in the process closes."""
        if self._shared is None:
            return
        with _registry_lock:
            self._shared.users -= 1
            if self._shared.users == 0:
                self._shared.env.close()
                if self._shared.syncer is not None:
                    self._shared.syncer.close()
                del _registry[self._key]
        self._shared = None


def open_log_env(path: Path, *, durable: bool = True) -> LmdbEnvironment:
    """Open (creating if needed) the log environment: durable unless it replays a log kept elsewhere (the cache
    of a lake in object storage, whose lost transactions the next pull re-applies)."""
    path.mkdir(parents=True, exist_ok=True)
    return LmdbEnvironment(path, LOG_DBS, durable=durable, map_size=LOG_MAP_SIZE)


def open_cache_env(path: Path) -> LmdbEnvironment:
    """Open (creating if needed) the derived-state cache environment."""
    path.mkdir(parents=True, exist_ok=True)
    return LmdbEnvironment(path, CACHE_DBS, durable=False, map_size=CACHE_MAP_SIZE)


class _Codecs(threading.local):
    """zstd contexts, one set per thread (they are not thread-safe); making one per blob cost more than
    compressing a small blob."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_codecs = _Codecs()


def frame_blob(kind: BlobKind, payload: bytes) -> tuple[str, bytes]:
    """Return (id, stored bytes) of a blob: id hashes the payload; stored bytes carry kind and codec."""
    return content_id(payload), framed(kind, payload)


def framed(kind: BlobKind, payload: bytes) -> bytes:
    """The stored bytes of a blob whose id the caller has (`frame_blob` without the hashing)."""
    if len(payload) >= ZSTD_MIN_BYTES:
        packed = _codecs.compressor.compress(payload)
        if len(packed) < len(payload):
            return BLOB_MAGIC + bytes([kind, Codec.ZSTD]) + packed
    return BLOB_MAGIC + bytes([kind, Codec.RAW]) + payload


def unframe_blob(blob_id: str, stored: bytes, *, expect: BlobKind, verify: bool = True) -> bytes:
    """Decode stored blob bytes, checking magic, kind and (if `verify`) that the payload hashes to its id.

    Raises:
        CorruptionError: the bytes are damaged or of another kind.
    """
    if len(stored) < 3 or stored[:1] != BLOB_MAGIC:
        raise CorruptionError(f"blob {blob_id} has a damaged header")
    if stored[1] != expect:
        raise CorruptionError(f"blob {blob_id} holds kind {stored[1]}, expected {expect.name}")
    codec = stored[2]
    try:
        if codec == Codec.RAW:
            payload = bytes(stored[3:])
        elif codec == Codec.ZSTD:
            payload = _codecs.decompressor.decompress(stored[3:])
        else:
            raise CorruptionError(f"blob {blob_id} uses unknown codec {codec}")
    except zstandard.ZstdError as exc:
        raise CorruptionError(f"blob {blob_id} does not decompress: {exc}") from exc
    if verify and content_id(payload) != blob_id:
        raise CorruptionError(f"blob {blob_id} does not hash to its name")
    return payload
