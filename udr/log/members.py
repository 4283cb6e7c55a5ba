"""Consumer groups with several members: member leases and partition records in the `groups` sub-database.

A group gets members when the first subscriber naming one (`member=`) joins it; its work is then split into
a fixed number of *partitions* (how a batch's rows map to partitions is `udr.stream.partition`'s). Each
partition has its own position (the single-member `Position`: a cursor and the tables followed) and at most
one *owner*: the lease token of the member consuming it. A member's lease is like a single-member group's
(pid, process start time, random token): live while that process runs and has not released it (or, as
the caller's `alive` says, while its holder renews it: a lake in object storage).

Ownership moves only in this module's write transactions: `claim` takes a partition that is free or whose
owner's lease is gone (its process died, or the member joined again under a new token), and gives back the
ones asked for. An ack (`PartitionAck.apply`, inside the commit of the consumer's outputs or on its own)
moves a partition's position by compare-and-swap, and only while the acking token owns the partition and is
still its member's lease: an ack with a stale lease is refused (`GroupBusy`), its outputs never commit, and
the batch is delivered again to the partition's new owner from the durable position.

Keys: `GROUP_MEMBER + group + NUL + member` -> lease JSON `{"pid", "started", "token", "time_us"}`;
`GROUP_PARTITION + group + NUL + "%04d" % n` -> position JSON (as `GROUP_POSITION`) plus `"owner"` (a lease
token or null) and `"member"` (its member name or null). Each public method is one LMDB transaction; safe
across threads and processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

import lmdb

from udr.errors import AckError, ConflictError, CorruptionError, GroupBusy, UsageError
from udr.log.envtypes import Environment, IndexTxn, LogEnvironments
from udr.log.format import (
    DB_GROUPS,
    GROUP_MEMBER,
    GROUP_PARTITION,
    GROUP_PARTITIONS_DEFAULT,
)
from udr.log.groups import (
    Alive,
    GroupStore,
    JsonDoc,
    dump,
    lease_alive,
    lease_doc,
    lease_from,
    new_lease,
    position_doc,
    position_from,
    retry_lost,
)
from udr.log.positions import Cursor, Lease, Position

MAX_PARTITIONS = 4096


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of a group: its position and who owns it (`owner`: a lease token)."""

    number: int
    position: Position
    owner: str | None = None
    member: str | None = None


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group with members as stored: its partitions (by number) and every recorded member lease."""

    name: str
    partitions: tuple[Partition, ...]
    members: dict[str, Lease]

    def live(self, alive: Alive) -> list[str]:
        """The names of the members whose lease is live (by `alive`), sorted."""
        return sorted(m for m, lease in self.members.items() if alive(lease))

    def owned_live(self, part: Partition, alive: Alive) -> bool:
        """Whether `part`'s owner is a live member (by `alive`) still holding the lease it claimed it with."""
        lease = self.members.get(part.member or "")
        return part.owner is not None and lease is not None and lease.token == part.owner and alive(lease)


@dataclass(frozen=True, slots=True)
class PartitionAck:
    """Move partition `partition` of `group` from `expected` to `new`, for `member`'s lease `token`; and
    each of `idle`'s partitions (number, expected, new) too where it is still as expected and owned by
    `token` (partitions the member knows got no batch up to `new`: so they do not lag behind)."""

    group: str
    member: str
    token: str
    partition: int
    expected: Cursor
    new: Position
    idle: tuple[tuple[int, Cursor, Position], ...] = ()

    def apply(self, txn: IndexTxn, env: Environment) -> None:
        """See `udr.log.groups.GroupAck.apply`."""
        MemberStore(env).apply_ack(txn, self)


class MemberStore:
    """Reads and writes the records of groups with members in a log environment."""

    def __init__(self, env: Environment, alive: Alive | None = None) -> None:
        self._env = env
        self._alive = alive or lease_alive

    @classmethod
    def of(cls, log: LogEnvironments, alive: Alive | None = None) -> MemberStore:
        """The members' records of `log` (how the layers above `udr.log` reach them); `alive` tells a live
        lease (default: its process runs on this machine)."""
        return cls(log.env, alive)

    def state(self, group: str) -> GroupState | None:
        """`group`'s partitions and members, None if it has no members' records."""
        with self._env.read() as txn:
            return self._state(txn, group)

    def states(self) -> dict[str, GroupState]:
        """Every group with members: name -> state."""
        with self._env.read() as txn:
            names = {key.partition(b"\0")[0].decode() for key, _ in self._scan(txn, GROUP_PARTITION)}
            return {name: state for name in sorted(names) if (state := self._state(txn, name)) is not None}

    @retry_lost
    def join(self, group: str, member: str, token: str, *, partitions: int | None, start: Position) -> GroupState:
        """Take `member`'s lease under `token`, making the group's partitions first if it has none (from a
        single-member group's position if there is one, else from `start`).

        Raises:
            GroupBusy: `member` is live already, or a single-member subscriber consumes the group.
            UsageError: `partitions` or the tables of `start` differ from the group's.
        """
        if partitions is not None and not 1 <= partitions <= MAX_PARTITIONS:
            raise UsageError(f"partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}")
        with self._env.write() as txn:
            state = self._state(txn, group)
            held = state.members.get(member) if state is not None else None
            if held is not None and self._alive(held):
                raise GroupBusy(f"member {member!r} of group {group!r} is live in process {held.pid}; "
                                "use another member name or stop that one")
            if state is None:
                origin = GroupStore(self._env, self._alive).take_over(txn, group) or start
                for n in range(partitions or GROUP_PARTITIONS_DEFAULT):
                    self._put_partition(txn, group, Partition(n, origin))
            elif partitions is not None and partitions != len(state.partitions):
                raise UsageError(f"group {group!r} has {len(state.partitions)} partitions, not {partitions}; "
                                 "the count is fixed when the group is made (delete the group to change it)")
            elif state.partitions[0].position.tables != start.tables:
                follows = state.partitions[0].position.tables
                raise UsageError(f"group {group!r} follows {', '.join(follows) if follows else 'every table'}; its "
                                 "members must subscribe to the same tables (or use another group)")
            txn.put(self._member_key(group, member), dump(lease_doc(new_lease(token))), db=self._db)
            joined = self._state(txn, group)
            assert joined is not None
            return joined

    @retry_lost
    def claim(self, group: str, member: str, token: str, *, take: Iterable[int], give: Iterable[int]) -> GroupState:
        """Give back the partitions `give` that `token` owns, then take those of `take` that are free or
        whose owner is gone; return the new state.

        Raises:
            GroupBusy: `token` no longer is `member`'s lease (the group was deleted or the member rejoined).
        """
        with self._env.write() as txn:
            state = self._member_state(txn, group, member, token)
            for n in give:
                part = state.partitions[n]
                if part.owner == token:
                    self._put_partition(txn, group, replace(part, owner=None, member=None))
            for n in take:
                part = state.partitions[n]
                if part.owner != token and not state.owned_live(part, self._alive):
                    self._put_partition(txn, group, replace(part, owner=token, member=member))
            claimed = self._state(txn, group)
            assert claimed is not None
            return claimed

    @retry_lost
    def leave(self, group: str, member: str, token: str) -> None:
        """Give back `member`'s lease and partitions, if `token` still holds them."""
        with self._env.write() as txn:
            state = self._state(txn, group)
            held = state.members.get(member) if state is not None else None
            if state is None or held is None or held.token != token:
                return
            txn.delete(self._member_key(group, member), db=self._db)
            for part in state.partitions:
                if part.owner == token:
                    self._put_partition(txn, group, replace(part, owner=None, member=None))

    @retry_lost
    def ack(self, ack: PartitionAck) -> None:
        """Move a partition's position by compare-and-swap, in a durable write of its own.

        Raises:
            AckError: the partition already is at (or past) the new position.
            ConflictError: the partition moved elsewhere since the member read it.
            GroupBusy: `ack.token` no longer owns the partition (its lease went stale).
        """
        with self._env.write() as txn:
            self.apply_ack(txn, ack)

    def apply_ack(self, txn: IndexTxn, ack: PartitionAck) -> None:
        """`ack` inside `txn` (see `ack`)."""
        # Only the two records involved are read: this runs inside the writer's lock, often in a commit.
        raw_lease = txn.get(self._member_key(ack.group, ack.member), db=self._db)
        if raw_lease is None or _lease(ack.group, raw_lease).token != ack.token:
            raise GroupBusy(f"member {ack.member!r} no longer holds its lease in group {ack.group!r} (the group was "
                            "deleted or the member joined again); subscribe again")
        raw_part = txn.get(self._partition_key(ack.group, ack.partition), db=self._db)
        part = self._partition(ack.group, ack.partition, raw_part) if raw_part is not None else None
        if part is None or part.owner != ack.token:
            raise GroupBusy(f"member {ack.member!r} no longer owns partition {ack.partition} of group {ack.group!r} "
                            "(it was rebalanced to another member, which gets the batch again); "
                            "go on with the next batch")
        current = part.position.cursor
        if current != ack.expected:
            if current.sort_key() >= ack.new.cursor.sort_key():
                raise AckError(f"partition {ack.partition} of group {ack.group!r} already acknowledged "
                               f"{ack.new.cursor} (it is at {current})")
            raise ConflictError(f"partition {ack.partition} of group {ack.group!r} moved from {ack.expected} to "
                                f"{current} after this member read it; subscribe again")
        self._put_partition(txn, ack.group, replace(part, position=ack.new))
        for number, expected, new in ack.idle:
            raw = txn.get(self._partition_key(ack.group, number), db=self._db)
            idle = self._partition(ack.group, number, raw) if raw is not None else None
            if idle is not None and idle.owner == ack.token and idle.position.cursor == expected:
                self._put_partition(txn, ack.group, replace(idle, position=new))

    @retry_lost
    def reset(self, group: str, position: Position) -> None:
        """Set every partition's position to `position` (rewind or skip), leaving them unowned.

        Raises:
            GroupBusy: a live member consumes the group; stop it first.
        """
        with self._env.write() as txn:
            state = self._idle_state(txn, group, "resetting")
            for part in state.partitions:
                self._put_partition(txn, group, Partition(part.number, position))

    @retry_lost
    def delete(self, group: str) -> bool:
        """Forget the group's partitions and members; False if it had none.

        Raises:
            GroupBusy: a live member consumes the group; stop it first.
        """
        with self._env.write() as txn:
            if self._state(txn, group) is None:
                return False
            self._idle_state(txn, group, "deleting")
            for prefix in (GROUP_MEMBER + group.encode() + b"\0", GROUP_PARTITION + group.encode() + b"\0"):
                for key, _ in self._scan(txn, prefix):
                    txn.delete(prefix + key, db=self._db)
            return True

    # -- inside a given transaction ---------------------------------------------------------------------

    @property
    def _db(self) -> lmdb._Database:
        return self._env.db(DB_GROUPS)

    def _member_key(self, group: str, member: str) -> bytes:
        return GROUP_MEMBER + group.encode() + b"\0" + member.encode()

    def _state(self, txn: IndexTxn, group: str) -> GroupState | None:
        name = group.encode() + b"\0"
        parts = []
        for key, raw in self._scan(txn, GROUP_PARTITION + name):
            try:
                number = int(key)
            except ValueError as exc:
                raise CorruptionError(f"a partition record of group {group!r} is damaged: {exc}") from exc
            parts.append(self._partition(group, number, raw))
        if not parts:
            return None
        if [p.number for p in parts] != list(range(len(parts))):
            raise CorruptionError(f"group {group!r} lacks partition records: it has {[p.number for p in parts]}")
        members = {}
        for key, raw in self._scan(txn, GROUP_MEMBER + name):
            members[key.decode(errors="replace")] = _lease(group, raw)
        return GroupState(group, tuple(parts), members)

    def _member_state(self, txn: IndexTxn, group: str, member: str, token: str) -> GroupState:
        state = self._state(txn, group)
        held = state.members.get(member) if state is not None else None
        if state is None or held is None or held.token != token:
            raise GroupBusy(f"member {member!r} no longer holds its lease in group {group!r} (the group was deleted "
                            "or the member joined again); subscribe again")
        return state

    def _idle_state(self, txn: IndexTxn, group: str, doing: str) -> GroupState:
        state = self._state(txn, group)
        if state is None:
            raise UsageError(f"group {group!r} has no members")
        live = state.live(self._alive)
        if live:
            raise GroupBusy(f"group {group!r} has live members ({', '.join(live)}); stop them before {doing} the group")
        return state

    def _partition(self, group: str, number: int, raw: bytes) -> Partition:
        doc = _load(group, "partition", raw)
        try:
            owner, member = doc.pop("owner", None), doc.pop("member", None)
            return Partition(number, position_from(doc), owner, member)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"partition {number} of group {group!r} is damaged: {exc}") from exc

    def _partition_key(self, group: str, number: int) -> bytes:
        return GROUP_PARTITION + group.encode() + b"\0" + b"%04d" % number

    def _put_partition(self, txn: IndexTxn, group: str, part: Partition) -> None:
        doc = {**position_doc(part.position), "owner": part.owner, "member": part.member}
        txn.put(self._partition_key(group, part.number), dump(doc), db=self._db)

    def _scan(self, txn: IndexTxn, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """(key after `prefix`, value) of every record whose key starts with `prefix`, in key order."""
        out: list[tuple[bytes, bytes]] = []
        cursor = txn.cursor(db=self._db)
        if cursor.set_range(prefix):
            for raw_key, value in cursor:
                key = bytes(raw_key)
                if not key.startswith(prefix):
                    break
                out.append((key[len(prefix):], bytes(value)))
        return out


def _lease(group: str, raw: bytes) -> Lease:
    try:
        return lease_from(_load(group, "member", raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"a member record of group {group!r} is damaged: {exc}") from exc


def _load(group: str, what: str, raw: bytes) -> JsonDoc:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CorruptionError(f"a {what} record of group {group!r} is damaged: {exc}") from exc
    if not isinstance(doc, dict):
        raise CorruptionError(f"a {what} record of group {group!r} is damaged: not a JSON object")
    return doc

