"""One open lake as the facade's modules share it: its layers, its change listeners, its open transactions
and subscriptions, how refs and versions are read (and served to SQL), and its commit point.

`Lake` builds one `Handle` when it opens, handing it the change source (`udr.api.changes`) and the commit
point (`udr.api.committing.commit`). Transactions, merges and the `Lake` method groups work through it (and
its `LakeContext`), never through `Lake` itself or one another, so no facade module depends on another's
privates and the parts of the facade do not import each other.
"""

from __future__ import annotations

import getpass
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from udr.api.context import LakeContext
from udr.errors import TableNotFound, close_matches
from udr.log import refspec
from udr.log.commits import commit_value
from udr.log.format import CommitId
from udr.log.groups import GroupAck
from udr.log.refspec import Ref
from udr.materialize.staging import Staging
from udr.materialize.states import TableState
from udr.query.engine import SnapshotServer
from udr.remote.remotelake import RemoteLake
from udr.stream.source import ChangeSource
from udr.values import Commit

# How a query on a branch reads a quoted `"table@REF"` (a table state) or `"table@A..B"` (change rows).
Resolver = Callable[[str, str], TableState | pa.Table]


class Abortable(Protocol):
    """An open transaction, as the handle tracks it (aborted when the lake closes)."""

    def abort(self) -> None:
        """Discard the transaction's staged changes."""


class Detachable(Protocol):
    """A live subscription, as the handle tracks it (detached when the lake closes)."""

    def detach(self) -> None:
        """End the subscription and give its group's lease back."""


class StagedAck(Protocol):
    """A group ack a transaction staged (`udr.stream.subscription.PendingAck`), as the commit point applies it."""

    @property
    def ack(self) -> GroupAck:
        """The move of the group's position, applied inside the commit's log write transaction."""

    def done(self) -> None:
        """Tell the subscription its batch is durably acknowledged (called once the commit succeeded)."""


class Committer(Protocol):
    """The commit point (`udr.api.committing.commit`), which `Lake` hands its handle."""

    def __call__(self, handle: Handle, staging: Staging, intent: Intent) -> Commit:
        """Commit `staging`'s changes through `handle` as `intent` says; return the new commit."""


class Changes(ChangeSource, Protocol):
    """The handle's change source (`udr.api.changes.LakeChanges`), which also hears of its own commits."""

    def committed(self, commit: Commit) -> None:
        """Tell every listener about `commit`, just made through this handle."""

    def between(self, table: str, since: CommitId | None, until: CommitId) -> pa.Table:
        """The change rows of `table` after `since` (None: from its creation) up to `until`."""


@dataclass(frozen=True, slots=True)
class Intent:
    """What a commit records besides its table ops.

    Attributes:
        branch: the branch it moves.
        message, author, metadata: as `udr.Commit` shows them.
        parents: both parents of a merge (never re-applied on a moved head); empty: the staging's base.
        action, mover: what the ref log says moved the branch, and who (None: the author).
        maintenance: a flush or merge (it triggers no other maintenance, and its rewrites are placeable).
    """

    branch: str
    message: str
    author: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    parents: tuple[CommitId, ...] = ()
    action: str = "commit"
    mover: str | None = None
    maintenance: bool = False


def os_user() -> str:
    """The OS user name ("unknown" if the system cannot tell)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Handle:
    """The shared state of one `Lake`.

    Attributes:
        ctx: the lake's layers.
        server: DuckDB views of the lake's table states, for SQL over its versions (`udr.query.engine`).
        changes: change rows, commit values and this handle's commit listeners.
        transactions: the transactions open on this handle.
        subscriptions: the live subscriptions of this handle.
        remote: for a lake in object storage, its mirror (`ctx.path` is then the local cache); else None.
    """

    def __init__(self, ctx: LakeContext, server: SnapshotServer, changes: Changes, committer: Committer,
                 remote: RemoteLake | None = None) -> None:
        self.ctx = ctx
        self.server = server
        self.changes = changes
        self.remote = remote
        self._committer = committer
        self.transactions: set[Abortable] = set()
        self.subscriptions: weakref.WeakSet[Detachable] = weakref.WeakSet()
        self._os_user: str | None = None

    def close(self) -> None:
        """Abort the open transactions and end the subscriptions (they give their groups' leases back)."""
        for tx in list(self.transactions):
            tx.abort()
        for sub in list(self.subscriptions):
            sub.detach()

    def author(self, given: str | None = None) -> str:
        """`given`, else `UDR_AUTHOR`, else the OS user name (looked up once: it costs a passwd read)."""
        if given:
            return given
        author = os.environ.get("UDR_AUTHOR")
        if author:
            return author
        if self._os_user is None:
            self._os_user = os_user()
        return self._os_user

    def commit(self, staging: Staging, intent: Intent) -> Commit:
        """Commit `staging`'s changes as `intent` says (a merge, a revert, a note; no group acks and no read
        set, which only a `Transaction` brings); return the new commit.

        Raises:
            ConflictError: a real conflict with a concurrent commit; nothing was written.
        """
        return self._committer(self, staging, intent)

    # -- refs and versions ------------------------------------------------------------------------------

    def head(self, branch: str) -> CommitId:
        """The head of `branch` (raises `RefNotFound`)."""
        return refspec.branch_head(self.ctx.log, branch)

    def resolve(self, ref: Ref, branch: str) -> CommitId:
        """The commit `ref` names (None: the head of `branch`); see `udr.log.refspec.resolve`."""
        return refspec.resolve(self.ctx.log, ref, branch)

    def commit_info(self, ref: Ref, branch: str = "main") -> Commit:
        """The `udr.Commit` that `ref` names."""
        cid = self.resolve(ref, branch)
        return commit_value(cid, self.ctx.log.get_commit(cid))

    def readable(self, commit: CommitId, tables: Iterable[str] | None = None) -> None:
        """Raise `udr.Expired` if one of `tables` (None: every table) at `commit` has expired."""
        self.ctx.check_readable(commit, self.ctx.materializer.snapshot(commit) if tables is None else tables)

    def snapshot(self, branch: str, at: Ref) -> dict[str, TableState]:
        """The tables of the version `at` names on `branch`, checked readable."""
        cid = self.resolve(at, branch)
        snap = self.ctx.materializer.snapshot(cid)
        self.ctx.check_readable(cid, snap)
        return snap

    def table(self, table: str, branch: str, at: Ref) -> TableState:
        """`table` at the version `at` names on `branch`.

        Raises:
            TableNotFound, RefNotFound, Expired: no such table or ref, or its data expired.
        """
        cid = self.resolve(at, branch)
        snap = self.ctx.materializer.snapshot(cid)
        if not isinstance(table, str) or table not in snap:
            where = f"at {at}" if at is not None else f"on branch {branch!r}"
            raise TableNotFound(f"table {table!r} does not exist {where}" + close_matches(str(table), snap))
        self.ctx.check_readable(cid, (table,))
        return snap[table]

    def change_rows(self, table: str, since: Ref, until: Ref, branch: str) -> pa.Table:
        """The change rows of `table` after `since` up to `until` (see `Lake.changes`)."""
        start = self.resolve(since, branch) if since is not None else None
        return self.changes.between(table, start, self.resolve(until, branch))

    def resolver(self, branch: str) -> Resolver:
        """How a query on `branch` reads a quoted `"table@REF"` or `"table@A..B"` (B defaults to its head)."""

        def resolve(table: str, ref: str) -> TableState | pa.Table:
            if ".." in ref:
                since, until = ref.split("..", 1)
                return self.change_rows(table, since or None, until or None, branch)
            return self.table(table, branch, ref)

        return resolve
