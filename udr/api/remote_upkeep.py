"""Upkeep of a lake in object storage, for the facade: following other machines (`refresh`) and `gc`, which
also frees the bucket and purges what erasures replaced (docs/remote.md, "Erasure").

An erasure is an ordinary commit in the remote log (its entry carries the replacement map, chunks and blobs).
A cache that applies it then deletes its own copies of the replaced bytes (`refresh` runs the local `gc`);
`gc` on any machine deletes the replaced chunk objects at once and rewrites the log entries that carry
replaced blobs without them. Safe across threads and processes as the layers' operations it calls are.
"""

from __future__ import annotations

from collections.abc import Callable

from udr.api import retention
from udr.api.handle import Handle
from udr.log.erasure import ErasureStore
from udr.log.format import ChunkId
from udr.log.pins import PinStore


def refresh(handle: Handle) -> int:
    """Apply what other machines committed; when that includes an erasure, drop the cache's copies of the
    bytes it replaced. Return the remote log entries applied (0 for a local lake)."""
    remote = handle.remote
    if remote is None:
        return 0
    log = handle.ctx.log
    erasures = ErasureStore.of(log)
    before = erasures.generation()
    applied = remote.pull()
    if erasures.generation() > before:
        retention.collect_garbage(handle.ctx, None)
    return applied


def collect_garbage(handle: Handle, progress: Callable[[int], None] | None) -> int:
    """`gc`: the cache's, then (for a lake in object storage) the bucket's; return bytes freed."""
    remote = handle.remote
    if remote is not None:
        remote.pull()
    freed = retention.collect_garbage(handle.ctx, progress)
    if remote is None:
        return freed
    ctx = handle.ctx
    erasures = ErasureStore.of(ctx.log)
    # Expiry is this cache's own decision (other machines may still read those versions): only chunks no
    # commit and no erasure names, or that an erasure replaced, leave the bucket.
    named = {ChunkId(i) for erasure in erasures.erasures() for i in erasure.new_ids()}
    needed = ctx.log.referenced_chunks() | named | PinStore(ctx.log).pinned()
    kept = retention.kept_data(ctx)
    # An id both replaced and still needed: an erasure's new deletion vector can equal an old one, byte for byte.
    gone = erasures.replaced() - ({*kept.chunks, *kept.blobs} if kept is not None else set())
    freed += remote.collect_garbage(needed, gone)
    remote.purge_log(gone)
    return freed
