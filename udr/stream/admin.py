"""Consumer groups seen from outside a subscription: listing them with their lag, moving and deleting them.

Covers both kinds of group: single-member groups (`udr.log.groups`) and groups with several members
(`udr.log.members`). Each call reads or writes the log's group records in its own LMDB transactions; safe
from any thread.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from udr.errors import UsageError
from udr.log.groups import Alive, GroupStore, lease_alive
from udr.log.members import GroupState, MemberStore
from udr.log.positions import Cursor, Position
from udr.log.protocols import LakeLog
from udr.stream.feed import lag
from udr.values import GroupInfo, MemberInfo, PartitionInfo


def group_infos(log: LakeLog, alive: Alive = lease_alive) -> list[GroupInfo]:
    """Every group that has a position (it acknowledged a batch or was reset) or members, by name; `alive`
    tells a live lease."""
    store = GroupStore.of(log)
    leases = store.leases()
    out = [_info(log, name, position, active=name in leases and alive(leases[name]))
           for name, position in store.positions().items()]
    for name, state in MemberStore.of(log).states().items():
        live = {m: alive(lease) for m, lease in state.members.items()}
        oldest = min((p.position for p in state.partitions), key=lambda p: p.cursor.sort_key())
        info = _info(log, name, oldest, active=any(live.values()))
        owned = {p.number: p.member for p in state.partitions
                 if p.member is not None and live.get(p.member) and state.members[p.member].token == p.owner}
        members = tuple(MemberInfo(m, live[m], lease.pid, tuple(n for n, owner in owned.items() if owner == m))
                        for m, lease in sorted(state.members.items()))
        out.append(GroupInfo(
            name=info.name, position=info.position, lag_commits=info.lag_commits, lag_rows=info.lag_rows,
            last_ack=max(_utc(p.position.time_us) for p in state.partitions), branch=info.branch,
            active=info.active, members=members, partitions=_partition_infos(log, state, owned),
        ))
    return sorted(out, key=lambda info: info.name)


def group_resume(log: LakeLog, group: str, branch: str) -> Cursor | None:
    """Where `group` resumes (for a group with members: its oldest partition), None if it has no position.

    Raises:
        UsageError: the group consumes another branch.
    """
    state = MemberStore.of(log).state(group)
    position = (min((p.position for p in state.partitions), key=lambda p: p.cursor.sort_key()) if state is not None
                else GroupStore.of(log).position(group))
    if position is not None and position.branch != branch:
        raise UsageError(f"group {group!r} consumes branch {position.branch!r}, not {branch!r}; use another group "
                         f"or move it with reset_group({group!r}, to=..., branch={branch!r})")
    return position.cursor if position is not None else None


def reset_group(log: LakeLog, group: str, *, seq: int, branch: str, alive: Alive = lease_alive) -> None:
    """Make `group` resume after the commit at `seq` on `branch` (keeping the tables it was made for, and
    following again any it stopped following because they were dropped: a reset is a fresh start). A group
    with members moves every partition there.

    Raises:
        GroupBusy: a live subscriber consumes the group (for a group with members: any member; `alive` tells
            a live lease).
    """
    members = MemberStore.of(log, alive)
    state = members.state(group)
    if state is not None:
        tables = state.partitions[0].position.tables
        members.reset(group, Position(Cursor(seq), time.time_ns() // 1000, branch, tables))
        return
    store = GroupStore.of(log, alive)
    old = store.position(group)
    tables = old.tables if old is not None else None
    store.reset(group, Position(Cursor(seq), time.time_ns() // 1000, branch, tables))


def delete_group(log: LakeLog, group: str, alive: Alive = lease_alive) -> None:
    """Forget `group`: its position(s), leases and members.

    Raises:
        GroupBusy: a live subscriber consumes the group.
        UsageError: there is no such group.
    """
    deleted = MemberStore.of(log, alive).delete(group)
    deleted = GroupStore.of(log, alive).delete(group) or deleted
    if not deleted:
        raise UsageError(f"there is no consumer group {group!r}; `udr groups` lists them")


def _info(log: LakeLog, name: str, position: Position, *, active: bool) -> GroupInfo:
    followed = tuple(t for t in position.tables if t not in position.dropped) if position.tables is not None else None
    behind = lag(log, position.branch, followed, position.cursor) if log.head(position.branch) else (0, 0)
    return GroupInfo(
        name=name,
        position=(log.commit_at_seq(position.cursor.seq) or "") if position.cursor.seq >= 0 else "",
        lag_commits=behind[0],
        lag_rows=behind[1],
        last_ack=_utc(position.time_us),
        branch=position.branch,
        active=active,
    )


def _partition_infos(log: LakeLog, state: GroupState, owned: dict[int, str]) -> tuple[PartitionInfo, ...]:
    return tuple(
        PartitionInfo(p.number, (log.commit_at_seq(p.position.cursor.seq) or "") if p.position.cursor.seq >= 0 else "",
                      p.position.cursor.seq,
                      p.position.cursor.table, owned.get(p.number), _utc(p.position.time_us))
        for p in state.partitions
    )


def _utc(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, tz=timezone.utc)
