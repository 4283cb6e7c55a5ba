"""The facade's `udr.stream.source.ChangeSource`: commit values, change rows for subscriptions, and the
handle's commit listeners.

One `LakeChanges` per `Lake`. Listeners run in the committing thread right after the commit point; a
listener must be quick and must not raise (subscriptions only wake their waiter).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import pyarrow as pa

from udr.api import history
from udr.api.context import LakeContext
from udr.log.commits import CommitRecord, commit_value
from udr.log.format import CommitId
from udr.stream.source import CommitListener
from udr.values import Commit


class LakeChanges:
    """Change rows from `udr.api.history`, commit values, and the listeners of one lake handle."""

    __slots__ = ("_ctx", "_listeners")

    def __init__(self, ctx: LakeContext) -> None:
        self._ctx = ctx
        self._listeners: list[CommitListener] = []

    def commit_changes(self, table: str, cid: CommitId, record: CommitRecord) -> pa.Table | None:
        """See `ChangeSource.commit_changes`."""
        return history.stamped_commit_changes(self._ctx, table, cid, record)

    def net_changes(self, a: CommitId, b: CommitId, tables: AbstractSet[str] | None) -> dict[str, pa.Table]:
        """See `ChangeSource.net_changes`."""
        return history.net_changes(self._ctx, a, b, tables)

    def primary_key(self, table: str, commit: Commit) -> tuple[str, ...] | None:
        """See `ChangeSource.primary_key`."""
        state = self._ctx.materializer.snapshot(CommitId(commit.id)).get(table)
        if state is None and commit.parents:
            state = self._ctx.materializer.snapshot(CommitId(commit.parents[0])).get(table)
        return state.primary_key if state is not None else None

    def between(self, table: str, since: CommitId | None, until: CommitId) -> pa.Table:
        """The change rows of `table` after `since` (None: from its creation) up to `until`."""
        return history.changes(self._ctx, table, since, until)

    def commit_value(self, cid: CommitId, record: CommitRecord) -> Commit:
        """See `ChangeSource.commit_value`."""
        return commit_value(cid, record)

    def add_listener(self, listener: CommitListener) -> None:
        """See `ChangeSource.add_listener`."""
        self._listeners.append(listener)

    def remove_listener(self, listener: CommitListener) -> None:
        """See `ChangeSource.remove_listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def committed(self, commit: Commit) -> None:
        """Tell every listener about `commit`, just made through this handle."""
        for listener in self._listeners:
            listener(commit)
