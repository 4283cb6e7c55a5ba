"""Consumer groups' durable records in the log's `groups` sub-database: positions and leases.

A group's *position* is where its consumers resume: the sequence number of the commit of its last
acknowledged change batch, plus the table of that batch (a commit delivers one batch per table, in sorted
table order; `table` None means the whole commit is done), plus, when a table's batch is delivered in parts
(bounded by `max_rows`), how many of its rows the acknowledged parts hold (`offset`; None: all of them).
A position moves only by compare-and-swap inside a log write transaction: its own (`GroupStore.ack`) or a
commit's (`ack_hook`), so a consumer's outputs and the position that covers them become durable in the same
LMDB transaction, or neither does.

A *lease* names the one subscriber that may consume a group: the holder's pid, the start time of that
process (so a recycled pid is not mistaken for the holder) and a random token. A lease whose process is
gone is free; a live holder, even in the calling process, makes `acquire` raise `GroupBusy`. Who is live
is the caller's `alive` (`lease_alive` by default; a lake in object storage, whose holders run on many
machines, asks their renewal deadlines: `udr.remote.leases`).

Keys: `GROUP_POSITION + name` -> JSON `{"seq", "table", "time_us", "branch", "tables"}` (plus `"offset"`
inside a table's parts, and `"dropped"` once a followed table was dropped);
`GROUP_LEASE + name` -> JSON `{"pid", "started", "token", "time_us"}`. Each public method is one LMDB
transaction; safe across threads and processes. In the cache of a lake in object storage each such
transaction is published as a remote log entry (`udr.remote.mirror`); one that loses the race for its
entry writes nothing and runs again on the records the cache then pulled (`retry_lost`). Groups with several
members keep other records (`udr.log.members`); an ack of either kind is a `GroupAck`, applied by `ack_hook`
inside a commit.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from udr.errors import AckError, ConflictError, CorruptionError, GroupBusy, UsageError
from udr.log.envtypes import CommitHook, Environment, IndexTxn, LogEnvironments
from udr.log.format import DB_GROUPS, GROUP_LEASE, GROUP_PARTITION, GROUP_POSITION, record_json
from udr.log.positions import Cursor, Lease, Position
from udr.log.processes import process_alive
from udr.log.races import LostRace

# A decoded JSON record, as `json.loads` returns it.
JsonDoc = dict[str, Any]
_P = ParamSpec("_P")
_T = TypeVar("_T")
# Writes retried after losing the race for a replicated log's next entry: each loss means another
# machine wrote first, and the replica pulled what it wrote.
_MAX_LOST_RACES = 64


def retry_lost(write: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run the group write `write` (one transaction) again while it loses the race for the next entry of a
    replicated log (`LostRace`: nothing was written, and the replica now holds the winner's records, which the
    next attempt checks against)."""
    @wraps(write)
    def retried(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        for _ in range(_MAX_LOST_RACES - 1):
            try:
                return write(*args, **kwargs)
            except LostRace:
                continue
        return write(*args, **kwargs)

    return retried


# Whether a lease's holder is live: `lease_alive` on one machine; a lake in object storage checks the
# holder's renewal deadline (`udr.remote.leases`).
Alive = Callable[[Lease], bool]


class GroupAck(Protocol):
    """A staged move of a group's position, applied inside a log write transaction."""

    def apply(self, txn: IndexTxn, env: Environment) -> None:
        """Check the lease and compare-and-swap the position in `txn`.

        Raises:
            AckError, ConflictError, GroupBusy: as `GroupStore.ack`; the caller's transaction aborts.
        """
        ...


@dataclass(frozen=True, slots=True)
class Ack:
    """Move group `group` from `expected` (None: it has no position yet) to `new`, for the lease `token`."""

    group: str
    token: str
    expected: Cursor | None
    new: Position

    def apply(self, txn: IndexTxn, env: Environment) -> None:
        """See `GroupAck.apply`."""
        GroupStore(env).apply_ack(txn, self)


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def lease_alive(lease: Lease) -> bool:
    """Whether the process holding `lease` still runs (a recycled pid with another start time does not)."""
    if not process_alive(lease.pid):
        return False
    started = process_start(lease.pid)
    return lease.started is None or started is None or started == lease.started


class GroupStore:
    """Reads and writes group records in a log environment."""

    def __init__(self, env: Environment, alive: Alive | None = None) -> None:
        self._env = env
        self._alive = alive or lease_alive

    @classmethod
    def of(cls, log: LogEnvironments, alive: Alive | None = None) -> GroupStore:
        """The group records of `log` (how the layers above `udr.log` reach them); `alive` tells a live lease
        (default: its process runs on this machine)."""
        return cls(log.env, alive)

    # -- reading ----------------------------------------------------------------------------------------

    def position(self, group: str) -> Position | None:
        """The durable position of `group`, None if it never acknowledged anything nor was reset."""
        with self._env.read() as txn:
            return self._position(txn, group)

    def positions(self) -> dict[str, Position]:
        """Every group with a position: name -> position."""
        with self._env.read() as txn:
            return {name: _decode_position(name, raw) for name, raw in self._scan(txn, GROUP_POSITION)}

    def leases(self) -> dict[str, Lease]:
        """Every recorded lease, live or not: name -> lease."""
        with self._env.read() as txn:
            return {name: _decode_lease(name, raw) for name, raw in self._scan(txn, GROUP_LEASE)}

    # -- writing ----------------------------------------------------------------------------------------

    @retry_lost
    def acquire(self, group: str, token: str) -> Position | None:
        """Take `group`'s lease for this process under `token` and return the group's position.

        Raises:
            GroupBusy: a live process holds the lease.
        """
        with self._env.write() as txn:
            if self._has_prefix(txn, GROUP_PARTITION + group.encode() + b"\0"):
                raise UsageError(f"group {group!r} has several members; subscribe with member=... to join it")
            held = self._lease(txn, group)
            if held is not None and self._alive(held):
                raise GroupBusy(_busy(group, held))
            lease = new_lease(token)
            txn.put(GROUP_LEASE + group.encode(), dump(lease_doc(lease)), db=self._env.db(DB_GROUPS))
            return self._position(txn, group)

    @retry_lost
    def release(self, group: str, token: str) -> None:
        """Give `group`'s lease back, if `token` still holds it."""
        with self._env.write() as txn:
            held = self._lease(txn, group)
            if held is not None and held.token == token:
                txn.delete(GROUP_LEASE + group.encode(), db=self._env.db(DB_GROUPS))

    @retry_lost
    def ack(self, ack: Ack) -> None:
        """Move a group's position by compare-and-swap, in a durable write of its own.

        Raises:
            AckError: the position already is (or is past) the new one: the batch was acknowledged.
            ConflictError: the position moved elsewhere (for example `reset`) since the subscriber read it.
            GroupBusy: the lease is no longer held by `ack.token`.
        """
        with self._env.write() as txn:
            self.apply_ack(txn, ack)

    @retry_lost
    def reset(self, group: str, position: Position) -> None:
        """Set `group`'s position outright (rewind or skip).

        Raises:
            GroupBusy: a live subscriber consumes the group; close it first.
        """
        with self._env.write() as txn:
            held = self._lease(txn, group)
            if held is not None and self._alive(held):
                raise GroupBusy(_busy(group, held) + "; close it before resetting the group")
            self._put_position(txn, group, position)

    def take_over(self, txn: IndexTxn, group: str, *, why: str = "before it gets members") -> Position | None:
        """Remove `group`'s single-member records inside `txn` and return its position (for a group that
        gets several members, or is deleted: `why` ends the error message).

        Raises:
            GroupBusy: a live subscriber consumes the group.
        """
        held = self._lease(txn, group)
        if held is not None and self._alive(held):
            raise GroupBusy(_busy(group, held) + f"; close it {why}")
        position = self._position(txn, group)
        for prefix in (GROUP_POSITION, GROUP_LEASE):
            txn.delete(prefix + group.encode(), db=self._env.db(DB_GROUPS))
        return position

    @retry_lost
    def delete(self, group: str) -> bool:
        """Forget a single-member group; False if it had no records.

        Raises:
            GroupBusy: a live subscriber consumes the group.
        """
        with self._env.write() as txn:
            existed = self._position(txn, group) is not None or self._lease(txn, group) is not None
            self.take_over(txn, group, why="before deleting the group")
            return existed

    # -- inside a given transaction ---------------------------------------------------------------------

    def apply_ack(self, txn: IndexTxn, ack: Ack) -> None:
        """`ack` inside `txn` (see `ack`)."""
        held = self._lease(txn, ack.group)
        if held is None or held.token != ack.token:
            raise GroupBusy(f"this subscriber no longer holds the lease of group {ack.group!r}; subscribe again")
        stored = self._position(txn, ack.group)
        current = stored.cursor if stored is not None else None
        if current != ack.expected:
            if current is not None and current.sort_key() >= ack.new.cursor.sort_key():
                raise AckError(f"group {ack.group!r} already acknowledged {ack.new.cursor} (it is at {current})")
            raise ConflictError(
                f"group {ack.group!r} moved from {ack.expected} to {current} after this subscriber read it; "
                "subscribe again"
            )
        self._put_position(txn, ack.group, ack.new)

    def _position(self, txn: IndexTxn, group: str) -> Position | None:
        raw = txn.get(GROUP_POSITION + group.encode(), db=self._env.db(DB_GROUPS))
        return _decode_position(group, raw) if raw is not None else None

    def _lease(self, txn: IndexTxn, group: str) -> Lease | None:
        raw = txn.get(GROUP_LEASE + group.encode(), db=self._env.db(DB_GROUPS))
        return _decode_lease(group, raw) if raw is not None else None

    def _put_position(self, txn: IndexTxn, group: str, position: Position) -> None:
        txn.put(GROUP_POSITION + group.encode(), dump(position_doc(position)), db=self._env.db(DB_GROUPS))

    def _has_prefix(self, txn: IndexTxn, prefix: bytes) -> bool:
        cursor = txn.cursor(db=self._env.db(DB_GROUPS))
        return bool(cursor.set_range(prefix)) and bytes(cursor.key()).startswith(prefix)

    def _scan(self, txn: IndexTxn, prefix: bytes) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        cursor = txn.cursor(db=self._env.db(DB_GROUPS))
        if cursor.set_range(prefix):
            for raw_key, value in cursor:
                key = bytes(raw_key)
                if not key.startswith(prefix):
                    break
                out.append((key[len(prefix):].decode(), bytes(value)))
        return out


def ack_hook(acks: Sequence[GroupAck]) -> CommitHook:
    """A `LogStore.append` hook that moves group positions inside the commit's own write transaction."""
    pending = tuple(acks)

    def hook(txn: IndexTxn, env: Environment) -> None:
        for ack in pending:
            ack.apply(txn, env)

    return hook


@retry_lost
def write_acks(log: LogEnvironments, acks: Sequence[GroupAck]) -> None:
    """Move group positions in one durable write of their own (acks of no commit: `Subscription.ack`, or a
    transaction that changed nothing).

    Raises:
        AckError, ConflictError, GroupBusy: as `GroupStore.ack`; nothing is written.
    """
    with log.env.write() as txn:
        ack_hook(acks)(txn, log.env)


def new_lease(token: str) -> Lease:
    """A lease for this process under `token`, stamped now."""
    return Lease(os.getpid(), process_start(os.getpid()), token, time.time_ns() // 1000)


def position_doc(position: Position) -> dict[str, object]:
    """The JSON document of a position record."""
    doc: dict[str, object] = {
        "seq": position.cursor.seq,
        "table": position.cursor.table,
        "time_us": position.time_us,
        "branch": position.branch,
        "tables": list(position.tables) if position.tables is not None else None,
    }
    if position.dropped:
        doc["dropped"] = list(position.dropped)
    if position.cursor.offset is not None:
        doc["offset"] = position.cursor.offset
    return doc


def lease_doc(lease: Lease) -> dict[str, object]:
    """The JSON document of a lease record."""
    return {"pid": lease.pid, "started": lease.started, "token": lease.token, "time_us": lease.time_us}


def dump(doc: Mapping[str, object]) -> bytes:
    """A record's canonical JSON bytes (sorted keys, no spaces)."""
    return record_json(doc)


def _busy(group: str, held: Lease) -> str:
    who = "this process" if held.pid == os.getpid() else f"process {held.pid}"
    return (f"group {group!r} is consumed by a live subscriber in {who}; one subscriber per group at a time, "
            "unless each names a member (member=...)")


def position_from(doc: JsonDoc) -> Position:
    """The position of a decoded position document.

    Raises:
        ValueError, KeyError, TypeError: the document is malformed (callers raise `CorruptionError`).
    """
    tables = doc["tables"]
    table = doc["table"]
    offset = doc.get("offset")
    return Position(
        Cursor(int(doc["seq"]), str(table) if table is not None else None,
               int(offset) if offset is not None else None),
        int(doc["time_us"]),
        str(doc["branch"]),
        tuple(str(t) for t in tables) if tables is not None else None,
        tuple(str(t) for t in doc.get("dropped", ())),
    )


def lease_from(doc: JsonDoc) -> Lease:
    """The lease of a decoded lease document.

    Raises:
        ValueError, KeyError, TypeError: the document is malformed (callers raise `CorruptionError`).
    """
    started = doc["started"]
    return Lease(int(doc["pid"]), int(started) if started is not None else None,
                 str(doc["token"]), int(doc["time_us"]))


def _decode_position(group: str, raw: bytes) -> Position:
    try:
        return position_from(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptionError(f"the position record of group {group!r} is damaged: {exc}") from exc


def _decode_lease(group: str, raw: bytes) -> Lease:
    try:
        return lease_from(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptionError(f"the lease record of group {group!r} is damaged: {exc}") from exc
