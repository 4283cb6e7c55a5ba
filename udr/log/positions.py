"""Where a consumer group stands, as values: a point in a change stream (`Cursor`), a group's durable
position (`Position`) and who consumes it now (`Lease`).

`udr.log.groups` stores them (JSON in the log's `groups` sub-database, described there) and
`udr.log.members` keeps the records of groups with several members; change feeds, subscriptions and the
leases of a lake in object storage (`udr.remote.leases`) pass them around without the stores. Immutable,
safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cursor:
    """A point in a branch's change stream: after commit `seq`'s batch for `table` (None: the whole commit),
    or, with `offset`, after the first `offset` rows of that batch (its parts delivered so far)."""

    seq: int
    table: str | None = None
    offset: int | None = None

    def __str__(self) -> str:
        return (f"seq {self.seq}" + (f" table {self.table!r}" if self.table is not None else "")
                + (f" row {self.offset}" if self.offset is not None else ""))

    def sort_key(self) -> tuple[int, int, str, int, int]:
        """Orders cursors along a stream: by commit, then table, then rows; None (all of it) comes last."""
        return (self.seq, 1 if self.table is None else 0, self.table or "",
                1 if self.offset is None else 0, self.offset or 0)


@dataclass(frozen=True, slots=True)
class Position:
    """A group's durable position, when it was written, and what the group consumes."""

    cursor: Cursor
    time_us: int
    branch: str
    tables: tuple[str, ...] | None
    # Tables of `tables` dropped at or before `cursor`: the group no longer follows them, even if a table
    # of that name is created again (as a subscriber that never stopped would not).
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """Who consumes a group now."""

    pid: int
    started: int | None
    token: str
    time_us: int
