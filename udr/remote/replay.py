"""Between a local cache's log and remote log entries: what a write transaction published, and applying an
entry another writer published.

Both work inside a transaction of the cache's log that the caller holds (`udr.log.replica.ReplicaTxn`), so an
applied entry and the cache's `remote_applied` position become durable together (replaying twice is
impossible), and what `collect` reads is exactly what that transaction is about to commit. Pure functions of
the transaction: safe from any thread that owns it.
"""

from __future__ import annotations

from collections.abc import Mapping

from udr.log.format import ChunkId
from udr.log.replica import Position, ReplicaTxn
from udr.remote.log import Entry


def collect(txn: ReplicaTxn, since: Position, seq: int, groups: Mapping[bytes, bytes] | None = None,
            ) -> tuple[Entry, set[ChunkId]] | None:
    """The entry (at remote position `seq`) publishing what `txn` wrote after `since` (and the consumer-group
    records it changed from `groups`, the records as it began; None: none published), and the chunks it
    needs uploaded first; None if it added no commit, moved no ref and changed no group record."""
    suffix = txn.suffix(since)
    changed = group_changes(groups, txn.group_records()) if groups is not None else {}
    if not suffix.commits and not suffix.moves and not changed:
        return None
    return Entry(seq, txn.lake_format(), suffix.commits, suffix.blobs, suffix.moves, changed), set(suffix.chunks)


def group_changes(before: Mapping[bytes, bytes], after: Mapping[bytes, bytes]) -> dict[bytes, bytes | None]:
    """The group records `after` holds that differ from `before`'s: key -> new value, None where deleted."""
    changed: dict[bytes, bytes | None] = {key: value for key, value in after.items() if before.get(key) != value}
    changed.update((key, None) for key in before.keys() - after.keys())
    return changed


def apply(txn: ReplicaTxn, entry: Entry, *, track: bool = True) -> None:
    """Apply remote `entry` to the cache inside `txn`: its blobs, commits and ref moves, and (if `track`: a
    cache, not a lake receiving a push or pull) its consumer-group records and the position.

    Raises:
        CorruptionError: a stored object does not hash to its id, or the cache has diverged from the remote
            log (delete the cache directory; it is rebuilt from the remote lake).
    """
    txn.apply(f"remote log entry {entry.seq}", entry.commits, entry.blobs, entry.moves, entry.format)
    if track:  # consumer groups belong to the lake that consumes, not to a lake a transfer fills
        txn.put_group_records(entry.groups)
        txn.set_applied(entry.seq)
