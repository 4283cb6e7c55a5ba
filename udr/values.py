"""Public value types returned by the API: commits, per-table change counts, reports, change batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class TableChange:
    """Row counts one commit (or a diff) changed in one table."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit of the log.

    Attributes:
        id: 64 hex digits, the BLAKE3 hash of the commit's canonical bytes.
        parents: ids of the parent commits (two for a merge, none for the root).
        seq: position in the lake's log.
        branch: the branch the commit was made on.
        time: commit time, UTC, timezone-aware.
        author, message, metadata: as given by the writer.
        tables: table name -> row counts changed.
    """

    id: str
    parents: tuple[str, ...]
    seq: int
    branch: str
    time: datetime
    author: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableChange] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        """The first 10 hex digits of the id."""
        return self.id[:10]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of `Lake.verify`: `ok` is True when `problems` is empty.

    Attributes:
        commits_checked: commit records rehashed against their ids.
        chunks_checked: data chunks rehashed (Parquet files and rows kept inline in the log), counted as
            `Lake.stats().chunks` counts them.
        problems: one line per problem found.
        blobs_checked: other log blobs rehashed (schemas, deletion vectors, before-images).
        expired: chunks and blobs absent because only versions the retention policy expired used them
            (`Lake.expire`, then `Lake.gc`), or because an erasure replaced them (`Lake.erase`): not damage.
    """

    commits_checked: int
    chunks_checked: int
    problems: list[str]
    blobs_checked: int = 0
    expired: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class LakeStats:
    """Storage figures of a lake.

    Attributes:
        commits: commits in the log.
        chunks: distinct data chunks (files and inline blobs) referenced by the log.
        logical_bytes: bytes of all chunk references summed over every commit's snapshot-level adds,
            as if every add were stored separately.
        stored_bytes: bytes actually on disk for those chunks (each stored once).
        dedup_ratio: logical_bytes / stored_bytes (1.0 when nothing is shared).
    """

    commits: int
    chunks: int
    logical_bytes: int
    stored_bytes: int

    @property
    def dedup_ratio(self) -> float:
        """How many times bigger the data would be without content addressing."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """The row changes one commit made to one table, as delivered by a `udr.Subscription`.

    Attributes:
        commit: the commit.
        table: the table it changed.
        changes: the table's columns plus `_change` (`insert`, `update_before`, `update_after`, `delete`),
            `_commit_id`, `_commit_seq` and `_commit_time`.
        partition: for a member of a consumer group with several members, the group partition these rows
            belong to (only that partition's rows of the commit's changes to `table`); None otherwise.
        part: which part of the commit's changes to `table` this is, from 0: changes of more than the
            subscription's `max_rows` rows come in consecutive parts of `max_rows` rows each (the last
            may be shorter), each delivered and acknowledged on its own.
        parts: how many parts the commit's changes to `table` come in (1: the whole batch at once).
    """

    commit: Commit
    table: str
    changes: pa.Table
    partition: int | None = None
    part: int = 0
    parts: int = 1

    @property
    def last_part(self) -> bool:
        """Whether this is the last (or only) part of the commit's changes to `table`."""
        return self.part + 1 >= self.parts


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group: where it is and how far behind its branch it is.

    Attributes:
        name: the group name.
        position: id of the commit of the group's last acknowledged batch (or of the ref it was reset to).
        lag_commits: commits on the branch after the position that change a table the group consumes.
        lag_rows: rows those commits changed in those tables (from the commits' counts).
        last_ack: when the position last moved, UTC.
        branch: the branch the group consumes.
        active: whether a live subscriber holds the group now (for a group with members: any member).
        members: a group with several members: its members, by name (empty for a single-member group).
        partitions: a group with several members: its partitions' positions and owners, by number.
    """

    name: str
    position: str
    lag_commits: int
    lag_rows: int
    last_ack: datetime
    branch: str = "main"
    active: bool = False
    members: tuple[MemberInfo, ...] = ()
    partitions: tuple[PartitionInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member of a consumer group with several members.

    Attributes:
        name: the member name given to `subscribe(member=...)`.
        active: whether its process is alive and holds its lease.
        pid: the process that joined under this name last.
        partitions: the partitions it owns now.
    """

    name: str
    active: bool
    pid: int
    partitions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition of a consumer group with several members.

    Attributes:
        number: the partition number, from 0.
        position: id of the commit of the partition's last acknowledged batch (or of where it started).
        seq: that commit's sequence number (-1: before the first commit).
        table: within that commit, the table of the last acknowledged batch (None: the whole commit).
        member: the member that owns it, None when free.
        last_ack: when its position last moved, UTC.
    """

    number: int
    position: str
    seq: int
    table: str | None
    member: str | None
    last_ack: datetime


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long the data of old versions is kept (`Lake.set_retention`).

    A version is kept while it is newer than `keep_days` or among the newest `keep_commits` commits of a
    branch's first-parent history (either keeps it; a None bound keeps nothing by itself). Branch heads,
    tags, holds and what consumer groups still need are kept whatever the policy.

    Attributes:
        keep_days: days a version's data is kept after its commit, None for no time window.
        keep_commits: versions kept per branch, newest first, None for no count window.
        table: the table the policy is for, None for the lake's default.
    """

    keep_days: float | None
    keep_commits: int | None
    table: str | None = None

    def describe(self) -> str:
        """The policy as one phrase, e.g. `keep_days=30, keep_commits=10 (table 'orders')`."""
        bounds = [f"{name}={value:g}" for name, value in (("keep_days", self.keep_days),
                                                          ("keep_commits", self.keep_commits)) if value is not None]
        where = f" (table {self.table!r})" if self.table is not None else " (lake)"
        return ", ".join(bounds) + where


@dataclass(frozen=True, slots=True)
class Hold:
    """A named hold: the version it keeps from expiring, and who placed it, when and why."""

    name: str
    commit_id: str
    reason: str
    author: str
    time: datetime


@dataclass(frozen=True, slots=True)
class ExpireReport:
    """Result of `Lake.expire`.

    Attributes:
        expired: versions (commits) whose data this call expired (for at least one table).
        tables_expired: (version, table) pairs this call expired.
        protected: versions outside the window kept by a branch head, tag, hold, consumer group or published
            Iceberg table.
        now: the time the window was measured from.
    """

    expired: int
    tables_expired: int
    protected: int
    now: datetime


@dataclass(frozen=True, slots=True)
class RefMove:
    """One move of a branch or tag, as the ref log recorded it (`Lake.reflog`).

    Attributes:
        name: the branch or tag.
        kind: "branch" or "tag".
        old: the commit id it held before, None when the move created it.
        new: the commit id it holds after, None when the move deleted it.
        action: what moved it: "commit", "merge", "revert", "reset", "create", "delete", or another
            operation's name.
        message: the commit message, or what the operation did.
        author: who moved it.
        time: when, UTC, timezone-aware.
        position: the move's place in the lake's ref log (0 is the first recorded move).
    """

    name: str
    kind: str
    old: str | None
    new: str | None
    action: str
    message: str
    author: str
    time: datetime
    position: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What `Lake.audit` found in a window of the log.

    Attributes:
        since, until: the window's bounds as given (None: open).
        table: the table the commits were filtered to, None for every table.
        commits: every commit in the log within the window (reachable from a ref or not), oldest first.
        ref_moves: every ref move recorded within the window, oldest first.
        verification: the hash-chain check of every commit in the window (its id recomputed from its
            record and parents, its parents' links, every chunk and blob it references).
    """

    since: str | None
    until: str | None
    table: str | None
    commits: list[Commit]
    ref_moves: list[RefMove]
    verification: VerifyReport

    @property
    def ok(self) -> bool:
        """True when the verification found no problem."""
        return self.verification.ok

    @property
    def verdict(self) -> str:
        """One line: whether the window's history verifies."""
        checked = (f"{self.verification.commits_checked} commit(s), {self.verification.chunks_checked} chunk(s) "
                   f"and {self.verification.blobs_checked} blob(s) checked")
        if self.ok:
            return f"VERIFIED: the hash chain is intact; {checked}"
        return f"FAILED: {len(self.verification.problems)} problem(s) found; {checked}"
