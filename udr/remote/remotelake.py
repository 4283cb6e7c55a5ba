"""A lake in object storage as the rest of udr sees it: what the facade asks of it (`RemoteLake`) and where
its chunk objects are (`chunk_key`).

`udr.remote.mirror.Mirror` implements `RemoteLake`: the local cache that replays the remote log and publishes
every commit made through it. The facade holds a lake's remote as a `RemoteLake` (`udr.api.handle.Handle`),
so it pulls, polls, collects garbage and names destinations through these operations only, never through the
mirror's replay machinery (its write-watcher hooks, chunk fetches and uploads, which only the cache's log
drives). Low in `udr/remote` so the modules that name a remote lake's objects (`udr.remote.publishing`) need
not import the cache that replays it. Safe across threads as the implementation is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from udr.log.format import REMOTE_CHUNK_PREFIX, ChunkId
from udr.remote.leases import RemoteLeases
from udr.remote.store import ObjectStore


def chunk_key(chunk: ChunkId) -> str:
    """The object key of a chunk file."""
    return f"{REMOTE_CHUNK_PREFIX}{chunk}"


class RemoteLake(Protocol):
    """One remote lake whose local cache an open lake reads and writes."""

    @property
    def url(self) -> str:
        """The remote lake's URL."""
        ...

    @property
    def store(self) -> ObjectStore:
        """The object store holding the remote lake."""
        ...

    @property
    def options(self) -> Mapping[str, str]:
        """The storage options the lake was opened with (for other stores it writes to)."""
        ...

    @property
    def leases(self) -> RemoteLeases:
        """The consumer-group leases held through this remote lake."""
        ...

    def pull(self) -> int:
        """Apply the remote log entries the cache lacks; return how many.

        Raises:
            StorageError: the store failed (nothing was applied).
        """
        ...

    def start_polling(self, on_error: Callable[[Exception], None] | None = None) -> None:
        """Pull in a background thread from now on, calling `on_error` with what a pull raises."""
        ...

    def collect_garbage(self, needed: set[ChunkId], replaced: set[str]) -> int:
        """Delete the remote chunks an erasure replaced, and old ones not `needed`; return bytes freed."""
        ...

    def purge_log(self, replaced: set[str]) -> int:
        """Rewrite the remote log entries that carry a blob in `replaced` without it; return how many.

        Raises:
            StorageError: the store failed; purging again resumes.
        """
        ...

    def close(self) -> None:
        """Stop polling and renewing leases."""
        ...
