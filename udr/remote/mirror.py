"""A local cache directory kept as a replica of one remote lake, publishing every commit made through it.

The cache is an ordinary lake directory (LMDB log + chunk files) whose log holds exactly the remote log's
commits, in its order; `meta.remote_applied` names the last remote entry applied. Chunk files are fetched the
first time a read needs one. The cache can be deleted at any time: the next open rebuilds it from the remote
lake.

Write order of a commit (docs/remote.md): (1) the commit's chunk files are uploaded (content-addressed: a
repeated put writes identical bytes); (2) the remote entry is created only if absent: the commit point; (3)
the local LMDB transaction commits. `Mirror` does (1) and (2) as the `WriteWatcher` of the cache's log, just
before the LMDB transaction commits, so a writer killed before (2) leaves only unreferenced chunks and one
killed between (2) and (3) leaves an entry its cache applies on the next pull. A writer that loses (2) to
another writer aborts its LMDB transaction, pulls on its next write and re-applies its changes on the new head
(`HeadMoved`, the many-writers rule of `udr.log.placement` and `udr.api.committing.restage`).
A write that changes consumer-group records (an ack, a join, a claim of partitions) publishes the records it
changed in its entry, so every cache holds the same groups and an ack travels in its commit's entry; a
group write that loses the race runs again (`udr.log.races.LostRace`). The liveness of group leases
lives in `udr.remote.leases`.
Safe across threads (LMDB serializes the cache's writers); the poller is one daemon thread per mirror.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

from udr.errors import (
    ConflictError,
    CorruptionError,
    FormatError,
    LakeNotFound,
    StorageError,
    UsageError,
)
from udr.log.chunks import FileChunkStore
from udr.log.format import REMOTE_CHUNK_PREFIX, ChunkId
from udr.log.label import read_format, write_label
from udr.log.races import HeadMoved, LostRace
from udr.log.replica import Position, Replica, ReplicaTxn, open_replica
from udr.log.store import LogStore
from udr.remote.leases import LEASE_SECONDS, RemoteLeases
from udr.remote.log import Entry, RemoteLog
from udr.remote.remotelake import chunk_key
from udr.remote.replay import apply, collect
from udr.remote.store import ObjectStore, open_store

# Parallel transfers of chunk files: obstore releases the GIL while a request is in flight.
_TRANSFERS = 8
# How often an idle poller looks for new remote entries: from the first to the second, doubling.
POLL_BACKOFF = (0.02, 0.4)
GC_GRACE = timedelta(hours=1)


class RemoteMoved(HeadMoved):
    """Another writer created the remote log entry this commit was to take; the cache pulls and retries."""


def default_cache(url: str) -> Path:
    """~/.cache/udr/<hash of url> (or under $XDG_CACHE_HOME)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "udr" / hashlib.sha256(url.encode()).hexdigest()[:16]


class Mirror:
    """One remote lake and the local cache directory that replays it."""

    def __init__(self, store: ObjectStore, root: Path, options: Mapping[str, str] | None = None, *,
                 lease: float = LEASE_SECONDS) -> None:
        self.store = store
        self.leases = RemoteLeases(store, lease)  # consumer-group leases held through this mirror
        self.options = dict(options or {})  # for other stores the lake writes to (Iceberg destinations)
        self.log = RemoteLog(store)
        self.root = root
        self._stale = False
        self._seen = -1  # the newest remote entry this mirror knows the cache holds (for error messages only)
        self._uploaded: set[ChunkId] = set()
        self._log: LogStore | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The remote lake's URL."""
        return self.store.url

    @property
    def _live(self) -> Replica:
        if self._log is None:
            raise UsageError(f"the cache of {self.url} is not attached to an open lake")
        return Replica.of(self._log)

    def attach(self, log: LogStore) -> None:
        """Publish every write of `log` (the cache's, opened by a lake) and fetch its chunk files on first read.
        Touches no network: `open_mirror` pulled."""
        self._log = log
        Replica.of(log).watch(self)
        log.chunks.fetch_missing(self.fetch)

    def fetch(self, chunk: ChunkId) -> bytes | None:
        """The bytes of chunk file `chunk` in object storage, None if it is not there.

        Raises:
            StorageError: (retryable) it is not there, and other machines committed since this cache last
                pulled: an erasure there may have replaced it; `refresh()` and read again.
        """
        data = self.store.get(chunk_key(chunk))
        if data is None and self.log.read(self._seen + 1) is not None:
            raise StorageError(f"chunk {chunk} is no longer in {self.url}, and other machines committed since this "
                               "cache last looked (an erasure and gc there remove the chunks it replaced); "
                               "refresh() and read again", retryable=True)
        return data

    def saw(self, seq: int) -> None:
        """Note that the cache holds remote entry `seq` (a chunk missing later is then explained better)."""
        self._seen = max(self._seen, seq)

    def close(self) -> None:
        """Stop polling and renewing leases (the cache's environment stays with the lake that opened it)."""
        self._stop.set()
        self.leases.close()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join()

    # -- the write watcher --------------------------------------------------------------------------------

    def begin(self, txn: ReplicaTxn) -> object:
        """Note where the cache's log stands as `txn` begins, and its consumer-group records."""
        return txn.position(), txn.group_records()

    def finish(self, txn: ReplicaTxn, began: object) -> None:
        """Publish what `txn` wrote: upload its chunks, then create the next remote entry (the commit point).

        Raises:
            RemoteMoved: another writer took that entry; `txn` aborts, then `aborted` pulls the winners'
                commits, and the writer re-applies its changes on them.
            StorageError: the store failed; `txn` aborts.
        """
        seq = txn.applied() + 1
        position, groups = cast(tuple[Position, dict[bytes, bytes]], began)
        found = collect(txn, position, seq, groups)
        if found is None:
            return
        entry, chunks = found
        self.upload(chunks)
        if not self.log.append(entry):
            self._stale = True
            raise _lost(self.url, entry)
        txn.set_applied(seq)
        self.saw(seq)

    def aborted(self) -> None:
        """After a lost publish, pull the winners' entries (in a transaction of their own, which commits)."""
        if self._stale:
            self._stale = False
            self.pull()

    # -- pulling ------------------------------------------------------------------------------------------

    def pull(self) -> int:
        """Apply every remote entry the cache lacks; return how many.

        Raises:
            StorageError: the store failed (nothing was applied). CorruptionError: see `replay.apply`.
        """
        return self._pull_into(self._live)

    def _pull_into(self, replica: Replica) -> int:
        with replica.reading() as txn:
            start = txn.applied() + 1
        entries = list(self.log.entries_from(start))
        if not entries:
            return 0
        with replica.writing(watched=False) as txn:
            done = txn.applied()
            for entry in entries:
                if entry.seq == done + 1:  # a thread or process sharing the cache may have applied some
                    apply(txn, entry)
                    done = entry.seq
        self.saw(done)
        return len(entries)

    def start_polling(self, on_error: Callable[[Exception], None] | None = None) -> None:
        """Pull in a daemon thread, looking every 20 ms to 0.4 s (backing off while nothing is new)."""
        if self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, args=(on_error,), name=f"udr-poll {self.url}",
                                        daemon=True)
        self._poller.start()

    def _poll(self, on_error: Callable[[Exception], None] | None) -> None:
        pause = POLL_BACKOFF[0]
        while not self._stop.wait(pause):
            try:
                found = self.pull()
            except Exception as exc:  # noqa: BLE001 - the poller must outlive a failed look; it reports it
                if on_error is not None:
                    on_error(exc)
                found = 0
            pause = POLL_BACKOFF[0] if found else min(pause * 2, POLL_BACKOFF[1])

    # -- chunks -------------------------------------------------------------------------------------------

    def upload(self, chunks: Iterable[ChunkId]) -> None:
        """Upload the chunk files `chunks` from the cache (those not uploaded by this mirror before)."""
        if self._log is None:
            raise UsageError(f"the cache of {self.url} is not attached to an open lake")
        todo = [c for c in chunks if c not in self._uploaded]
        upload(self.store, self._log.chunks, todo)
        self._uploaded.update(todo)

    def collect_garbage(self, needed: set[ChunkId], replaced: set[str], *, grace: timedelta = GC_GRACE) -> int:
        """Delete the remote chunks in `replaced` (by an erasure) at once, and those not in `needed` once older
        than `grace` (a concurrent writer may be about to reference a newer one); return bytes freed."""
        cutoff = datetime.now(timezone.utc) - grace
        freed = 0
        for info in self.store.list(REMOTE_CHUNK_PREFIX):
            chunk = ChunkId(info.key.rpartition("/")[2])
            if chunk in replaced or (chunk not in needed and info.modified < cutoff):
                self.store.delete(info.key)
                freed += info.size
        return freed

    def purge_log(self, replaced: set[str]) -> int:
        """Rewrite every remote log entry that carries a blob an erasure replaced without it (once per set of
        erasures: the cache notes how many ids it purged); return the entries rewritten.

        Raises:
            StorageError: the store failed; purging again resumes.
        """
        with self._live.reading() as txn:
            done, last = txn.purged(), txn.applied()
        if not replaced or done >= len(replaced):
            return 0
        rewritten = sum(self.log.drop_blobs(seq, replaced) for seq in range(last + 1))
        with self._live.writing(watched=False) as txn:
            txn.set_purged(len(replaced))
        return rewritten


def upload(store: ObjectStore, source: FileChunkStore, chunks: list[ChunkId], *, missing_only: bool = False) -> None:
    """Put the chunk files `chunks` of `source` into `store`, several at a time (if `missing_only`: those the
    store lacks, at the cost of one existence check each)."""
    def send(chunk: ChunkId) -> None:
        if not (missing_only and store.exists(chunk_key(chunk))):
            store.put(chunk_key(chunk), source.get(chunk, verify=False))

    _each(send, chunks)


def _each(work: Callable[[ChunkId], None], chunks: list[ChunkId]) -> None:
    if len(chunks) <= 1:
        for chunk in chunks:
            work(chunk)
        return
    with ThreadPoolExecutor(min(_TRANSFERS, len(chunks))) as pool:
        for _ in pool.map(work, chunks):
            pass


def _lost(url: str, entry: Entry) -> ConflictError:
    """What a writer that lost entry `entry.seq` raises: a commit re-applies its changes on the winner's head,
    any other write (a ref or consumer-group change) runs again on the records the cache then pulled."""
    for move in entry.moves:
        if str(move["ref"]).startswith("branch:") and move["old"] is not None and entry.commits:
            return RemoteMoved(f"another writer committed to {url} first (remote log entry {entry.seq}); "
                               "re-applying on its commits", str(move["old"]))  # type: ignore[arg-type]
    return LostRace(f"another writer changed {url} first (remote log entry {entry.seq}); retry")


def open_mirror(url: str, *, cache: str | os.PathLike[str] | None, options: Mapping[str, str] | None,
                create: bool, lease: float = LEASE_SECONDS) -> Mirror:
    """The mirror of the remote lake at `url`, its cache directory ready to open as a lake (its group leases
    lasting `lease` seconds).

    Raises:
        LakeNotFound: no lake at `url` and `create` is False, or no such bucket.
        UsageError: `cache` holds a local lake that is not a cache of `url`, or `lease` is not positive.
        StorageError: the store failed.
    """
    store = open_store(url, options)
    root = Path(cache).expanduser() if cache is not None else default_cache(store.url)
    mirror = Mirror(store, root, options, lease=lease)
    first = mirror.log.read(0)
    if read_format(root) is not None and _cache_matches(mirror, first):
        with open_replica(root) as replica:
            mirror._pull_into(replica)
        return mirror
    if first is None:
        if not create:
            raise LakeNotFound(f"no lake at {store.url}; open it with create=True to make one")
        if _create(mirror):
            return mirror
        shutil.rmtree(root)  # a concurrent creator won entry 0: replay its lake instead
    _bootstrap(mirror)
    return mirror


def _cache_matches(mirror: Mirror, first: Entry | None) -> bool:
    """Whether the lake at the cache directory replays `mirror`'s remote lake (else it is deleted)."""
    try:
        with open_replica(mirror.root) as replica, replica.reading() as txn:
            url = txn.remote_url()
            root_commit = txn.root_commit()
    except FormatError:
        shutil.rmtree(mirror.root)  # damaged by a system crash (a cache is never fsynced): rebuild it
        return False
    if url is None:
        raise UsageError(f"{mirror.root} is a local lake, not a cache of {mirror.url}; give another cache directory")
    if url == mirror.url and first is not None and first.commits \
            and root_commit is not None and root_commit == first.commits[0][0]:
        return True
    shutil.rmtree(mirror.root)
    return False


def _create(mirror: Mirror) -> bool:
    """Make a new lake in the cache and publish it as remote entry 0; False if another writer made one first."""
    LogStore(mirror.root).close()
    with open_replica(mirror.root) as replica, replica.writing(watched=False) as txn:
        found = collect(txn, Position(-1, 0), 0)
        if found is None:
            raise CorruptionError(f"the new lake at {mirror.root} has no root commit")
        won = mirror.log.append(found[0])
        if won:
            txn.set_remote_url(mirror.url)
            txn.set_applied(0)
            mirror.saw(0)
    return won


def _bootstrap(mirror: Mirror) -> None:
    """Build the cache from the remote log alone; the FORMAT label, written last, marks it complete."""
    entries = list(mirror.log.entries_from(0))
    mirror.root.mkdir(parents=True, exist_ok=True)
    with open_replica(mirror.root) as replica, replica.writing(watched=False) as txn:
        txn.set_remote_url(mirror.url)
        if entries:
            txn.set_format(entries[0].format)
        for entry in entries:
            apply(txn, entry)
            mirror.saw(entry.seq)
        version = txn.lake_format()
    write_label(mirror.root, version)
