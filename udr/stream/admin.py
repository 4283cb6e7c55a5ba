"""Consumer groups seen from outside a subscription: listing them with their lag, and moving them.

Each call reads or writes the log's group records in its own LMDB transaction; safe from any thread.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from udr.log.groups import Cursor, GroupStore, Position, lease_alive
from udr.log.store import LogStore
from udr.stream.feed import lag
from udr.values import GroupInfo


def group_infos(log: LogStore) -> list[GroupInfo]:
    """Every group that has a position (it acknowledged a batch or was reset), by name."""
    store = GroupStore(log.env)
    leases = store.leases()
    out: list[GroupInfo] = []
    for name, position in sorted(store.positions().items()):
        followed = tuple(t for t in position.tables if t not in position.dropped) if position.tables is not None else None
        behind = lag(log, position.branch, followed, position.cursor) if log.head(position.branch) else (0, 0)
        lease = leases.get(name)
        out.append(GroupInfo(
            name=name,
            position=log.commit_at_seq(position.cursor.seq) or "",
            lag_commits=behind[0],
            lag_rows=behind[1],
            last_ack=datetime.fromtimestamp(position.time_us / 1_000_000, tz=timezone.utc),
            branch=position.branch,
            active=lease is not None and lease_alive(lease),
        ))
    return out


def reset_group(log: LogStore, group: str, *, seq: int, branch: str) -> None:
    """Make `group` resume after the commit at `seq` on `branch` (keeping the tables it was made for, and
    following again any it stopped following because they were dropped: a reset is a fresh start).

    Raises:
        GroupBusy: a live subscriber consumes the group.
    """
    store = GroupStore(log.env)
    old = store.position(group)
    tables = old.tables if old is not None else None
    store.reset(group, Position(Cursor(seq), time.time_ns() // 1000, branch, tables))
